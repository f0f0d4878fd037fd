"""A model server's GPUs: its weights load, then each GPU is as busy as the requests it is sent.

Requests reach the replicas through a load balancer, so every GPU sees about
the same rate: a level that drifts over minutes (traffic), and per second the
scatter of a few dozen requests (Poisson). No iterations and no barrier; the
GPUs keep their memory while the server runs. Its own generator, so a trace
without a server draws what it always drew.
"""

from __future__ import annotations

import math

import numpy as np

from ironsight.offline.simulate.job import IDLE, JOB_START_S, LOAD, TRAIN, Plan

REQUESTS_PER_S = 40.0  # at full utilization: per-second scatter of about 1/sqrt(rate x level)


def serving_phase(plan: Plan, t: float) -> int:
    """IDLE before the server starts, LOAD while its weights load, then TRAIN (serving) to the end."""
    if t < JOB_START_S:
        return IDLE
    if t < JOB_START_S + plan.load_s:
        return LOAD
    return TRAIN


class Serving:
    def __init__(self, rng: np.random.Generator, nodes: int, gpus: int) -> None:
        self.rng = rng
        self.level = float(rng.uniform(0.10, 0.45))  # the service's mean utilization
        self.drift_s = float(rng.uniform(600, 1800))  # traffic's slow swing
        self.phase = float(rng.uniform(0, 2 * math.pi))
        self.shape = (nodes, gpus)

    def tick(self, t: float) -> np.ndarray:
        """Each GPU's utilization this second (0-1), (nodes, gpus)."""
        level = self.level * (1 + 0.25 * math.sin(2 * math.pi * t / self.drift_s + self.phase))
        requests = self.rng.poisson(REQUESTS_PER_S * level, self.shape)
        busy: np.ndarray = np.clip(requests / REQUESTS_PER_S, 0.0, 1.0)
        return busy
