"""Kubernetes: which pod and container holds each GPU, from the kubelet's PodResources v1 API.

`List` on the kubelet's unix socket names, per container, the device ids its
device plugins allocated: NVIDIA's are GPU UUIDs (`GPU-...`) and MIG UUIDs
(`MIG-...`, or `MIG-GPU-<uuid>/<gi>/<ci>` from older plugins), which NVML maps
to our GPU keys. No socket: not a Kubernetes node, and nothing to say.
"""

from __future__ import annotations

import logging
from pathlib import Path

import grpc

from ironsight.agent.once import log_once
from ironsight.core.reading import GpuOwner
from ironsight.kubelet.podresources.v1 import api_pb2, api_pb2_grpc

DEFAULT_SOCKET = Path("/var/lib/kubelet/pod-resources/kubelet.sock")
TIMEOUT_S = 1.0  # the look runs on the sampler's thread: a kubelet that hangs costs this, no more


class PodResources:
    def __init__(self, socket: Path) -> None:
        self.socket = socket
        self._channel: grpc.Channel | None = None

    def owners(self, uuids: dict[str, str]) -> list[GpuOwner] | None:
        """Each GPU's pods (uuids: GPU or MIG UUID -> GPU key); None where there is no kubelet socket."""
        if not self.socket.exists():
            return None
        if self._channel is None:
            self._channel = grpc.insecure_channel(f"unix:{self.socket}")
        try:
            response = api_pb2_grpc.PodResourcesListerStub(self._channel).List(  # type: ignore[no-untyped-call]
                api_pb2.ListPodResourcesRequest(), timeout=TIMEOUT_S
            )
        except grpc.RpcError as exc:
            log_once(
                f"jobs.kubelet.{exc.code()}",
                f"jobs: the kubelet's pod resources at {self.socket} did not answer"
                f" ({exc.code().name}); pods unknown until it does",
                logging.WARNING,
            )
            return []
        owners = []
        for pod in response.pod_resources:
            for container in pod.containers:
                for devices in container.devices:
                    if not devices.resource_name.startswith("nvidia.com/"):
                        continue
                    for device in devices.device_ids:
                        gpu = uuids.get(device) or uuids.get(_parent(device))
                        if gpu is None:
                            log_once(
                                f"jobs.kubelet.id.{device}", f"jobs: the kubelet's {device} is no GPU here"
                            )
                            continue
                        attrs = [
                            ("container", container.name),
                            ("namespace", pod.namespace),
                            ("pod", pod.name),
                        ]
                        if device.startswith("MIG-"):
                            attrs.append(("mig", device))
                        owners.append(
                            GpuOwner(gpu, f"{pod.namespace}/{pod.name}", "kubernetes", tuple(sorted(attrs)))
                        )
        return owners

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None


def _parent(device: str) -> str:
    """An older plugin's MIG id names its GPU: MIG-GPU-<uuid>/<gi>/<ci> -> GPU-<uuid>."""
    return device[4:].split("/")[0] if device.startswith("MIG-GPU-") else ""
