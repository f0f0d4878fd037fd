"""The ironsight collector: ingests agents' batches into DuckDB and serves queries."""
