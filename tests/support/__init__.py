"""Test helpers, imported as support.* by tests and benchmarks: processes, fixture trees, the NVML double,
a real Prometheus, traces and batches made by hand, network namespaces."""
