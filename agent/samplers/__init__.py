"""One module per source; importing this package registers them all."""

from ironsight.agent.samplers import cpu, disk, gpu, hwmon, jobs, memory, nic, pressure, rdma  # noqa: F401
from ironsight.agent.samplers.base import REGISTRY

__all__ = ["REGISTRY"]
