"""The `ironsight` command: one module per command group over the query backend and the offline tools."""
