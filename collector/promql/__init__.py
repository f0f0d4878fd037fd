"""PromQL and the Prometheus HTTP API over the store (docs/promql.md)."""
