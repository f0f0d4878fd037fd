"""Pods on each GPU from a real gRPC server speaking the kubelet's PodResources v1 API on a unix
socket, with pods arriving and leaving while the agent looks, and a kubelet that stops answering."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from ironsight.agent.jobs.discover import Discovery
from ironsight.agent.jobs.options import JobOptions
from ironsight.agent.nvml import Nvml
from ironsight.agent.samplers.base import Paths
from ironsight.core.reading import GpuOwner
from ironsight.kubelet.podresources.v1 import api_pb2, api_pb2_grpc

from support.nvml_double import CaptureNvml, capture

H200 = "linux-x86_64__nvidia-h200__590.48.01.txt"


class Kubelet(api_pb2_grpc.PodResourcesListerServicer):
    def __init__(self) -> None:
        self.pods: list[api_pb2.PodResources] = []

    def List(self, request: Any, context: Any) -> api_pb2.ListPodResourcesResponse:
        return api_pb2.ListPodResourcesResponse(pod_resources=self.pods)


def pod(namespace: str, name: str, container: str, resource: str, *ids: str) -> api_pb2.PodResources:
    devices = api_pb2.ContainerDevices(resource_name=resource, device_ids=list(ids))
    return api_pb2.PodResources(
        name=name,
        namespace=namespace,
        containers=[api_pb2.ContainerResources(name=container, devices=[devices])],
    )


@pytest.fixture
def kubelet(tmp_path: Path) -> Iterator[tuple[Kubelet, Path, grpc.Server]]:
    socket = tmp_path / "pod-resources" / "kubelet.sock"
    socket.parent.mkdir()
    service = Kubelet()
    server = grpc.server(futures.ThreadPoolExecutor(2))
    api_pb2_grpc.add_PodResourcesListerServicer_to_server(service, server)
    server.add_insecure_port(f"unix:{socket}")
    server.start()
    yield service, socket, server
    server.stop(0)


def discovery(tmp_path: Path, socket: Path) -> Discovery:
    nvml = CaptureNvml(capture(H200), "idle")
    nvml.count = 4
    nvml.nvmlDeviceGetUUID = lambda h: f"GPU-0000000{h[1]}-aaaa-bbbb-cccc-dddddddddddd"  # type: ignore[method-assign]
    lib = Nvml(nvml)
    lib.init()
    return Discovery(JobOptions(processes=False, kubelet_socket=socket), lib, Paths(tmp_path / "proc"))


GPUS = [(str(i), ("handle", i)) for i in range(4)]


def uuid(i: int) -> str:
    return f"GPU-0000000{i}-aaaa-bbbb-cccc-dddddddddddd"


def test_pods_come_and_go_between_looks(tmp_path: Path, kubelet: tuple[Kubelet, Path, grpc.Server]) -> None:
    service, socket, _ = kubelet
    d = discovery(tmp_path, socket)
    assert d.observe(GPUS).jobs == ()
    service.pods = [
        pod("ml", "llama-train-0", "trainer", "nvidia.com/gpu", uuid(0), uuid(1)),
        pod("serving", "embed-7f9c", "server", "nvidia.com/mig-1g.18gb", f"MIG-{uuid(3)}/1/0"),
        pod("ml", "sidecar", "exporter", "example.com/fpga", "fpga-0"),  # not a GPU: ignored
    ]
    attrs = (("container", "trainer"), ("namespace", "ml"), ("pod", "llama-train-0"))
    assert d.observe(GPUS).jobs == (
        GpuOwner("0", "ml/llama-train-0", "kubernetes", attrs),
        GpuOwner("1", "ml/llama-train-0", "kubernetes", attrs),
        GpuOwner("3", "serving/embed-7f9c", "kubernetes", (
            ("container", "server"), ("mig", f"MIG-{uuid(3)}/1/0"), ("namespace", "serving"), ("pod", "embed-7f9c"))),
    )  # fmt: skip
    service.pods = service.pods[1:]  # the training pod ended
    assert [o.gpu for o in d.observe(GPUS).jobs] == ["3"]
    d.close()


def test_a_kubelet_that_stops_answering_is_said_once_and_the_rest_goes_on(
    tmp_path: Path, kubelet: tuple[Kubelet, Path, grpc.Server], caplog: pytest.LogCaptureFixture
) -> None:
    service, socket, server = kubelet
    folder = tmp_path / "map"
    folder.mkdir()
    (folder / "2").write_text("9001\n")
    d = discovery(tmp_path, socket)
    d.options = JobOptions(processes=False, kubelet_socket=socket, mapping_dir=folder)
    service.pods = [pod("ml", "a", "c", "nvidia.com/gpu", uuid(0))]
    assert [o.job for o in d.observe(GPUS).jobs] == ["ml/a", "9001"]
    server.stop(0).wait()  # the kubelet stops answering (gRPC removes its socket on the way out)
    socket.touch()  # and a stale socket file is left, as after a crash
    with caplog.at_level(logging.WARNING, logger="ironsight.agent"):
        for _ in range(3):
            assert [o.job for o in d.observe(GPUS).jobs] == ["9001"]
    said = [r for r in caplog.records if "pod resources" in r.getMessage()]
    assert len(said) == 1 and "did not answer" in said[0].getMessage()
    socket.unlink(missing_ok=True)  # no socket at all: not a Kubernetes node, nothing to say
    assert [o.job for o in d.observe(GPUS).jobs] == ["9001"]
    d.close()
