"""ironsight: telemetry for AI servers. The agent, the collector, the CLI and the offline tools live in subpackages; see docs/architecture.md."""
