"""Who owns each GPU, every few seconds (agent/jobs/): the batcher sends it when it changes."""

from __future__ import annotations

import logging

from ironsight.agent.jobs.discover import Discovery
from ironsight.agent.nvml import Nvml, NvmlUnavailable
from ironsight.agent.once import log_once
from ironsight.agent.samplers.base import RESCAN_EVERY_S, BaseSampler, Every, SamplerContext, register
from ironsight.core.reading import Reading

log = logging.getLogger("ironsight.agent")


@register("jobs", "which job owns each GPU: its processes' cgroups, a job-mapping folder, or --job")
class JobsSampler(BaseSampler):
    def __init__(self, ctx: SamplerContext) -> None:
        super().__init__(ctx)
        self.nvml = Nvml(ctx.nvml)
        self.discovery = Discovery(ctx.jobs, self.nvml, ctx.paths)
        self.due = Every(ctx.jobs.every_s)
        self.rescan = Every(RESCAN_EVERY_S)
        self.gpus: list[tuple[str, object]] = []
        try:
            self.nvml.init()
            self.available = True
        except NvmlUnavailable:
            self.available = False  # the GPU sampler says so, once; no GPU has an owner

    def sample(self) -> Reading:
        reading = Reading()
        if not self.available or not self.due.due():
            return reading
        if self.rescan.due():
            count = self.nvml.call("nvmlDeviceGetCount") or 0
            self.gpus = [(str(i), self.nvml.call("nvmlDeviceGetHandleByIndex", i)) for i in range(count)]
        try:
            reading.owners = self.discovery.observe(self.gpus)
        except self.nvml.lib.NVMLError as exc:  # a GPU lost mid-listing: looked up again next time
            log_once(f"jobs.nvml.{exc}", f"jobs: {exc}; GPUs listed again", logging.WARNING)
            self.rescan.expire()
        return reading

    def close(self) -> None:
        self.discovery.close()
        self.nvml.shutdown()
