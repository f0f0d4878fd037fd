"""Offline tools over recorded telemetry: the simulator, trace replay, detector evaluation, explanations and plots."""
