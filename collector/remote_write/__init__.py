"""Remote write: stored samples forwarded to a Prometheus-compatible receiver, as the agents' /metrics shows them."""
