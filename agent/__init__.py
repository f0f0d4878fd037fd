"""The ironsight agent: samples this node's hardware and streams it to a collector."""

__version__ = "0.1.0"
