"""Devices that come and go while the agent runs: the rest keep their tick, the inventory follows.

node_exporter's fixture tree, changed between ticks as the kernel changes /proc and /sys: an NVMe
drive removed, a CPU taken offline, an InfiniBand port gone (a GPU fallen off the bus: test_gpu.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ironsight.agent.runner import Runner
from ironsight.agent.samplers import REGISTRY
from ironsight.agent.samplers.base import Paths, SamplerContext, open_files

from support.fixturetree import materialize, need_shared


def devices(reading: object, table: str) -> set[str]:
    return {d for d, _ in reading.rows(table)}  # type: ignore[attr-defined]


def test_devices_removed_while_sampling(tmp_path: Path) -> None:
    root = materialize(need_shared("node_exporter"), tmp_path / "tree")
    ctx = SamplerContext(paths=Paths(root / "proc", root / "sys"))
    runner = Runner([s.factory(ctx) for n, s in REGISTRY.items() if n != "gpu"], 5.0)
    try:
        before = runner.tick().reading
        inventory = {(d.kind, d.name) for d in runner.inventory()}
        assert "nvme0n1" in devices(before, "disk") and "7" in devices(before, "cpu")
        assert "mlx4_0:2" in devices(before, "rdma") and ("rdma", "mlx4_0:2") in inventory
        assert ("nvme", "nvme0") in inventory

        stat = root / "proc/diskstats"
        stat.write_text(
            "".join(line for line in stat.read_text().splitlines(True) if " nvme0n1 " not in line)
        )
        shutil.rmtree(root / "sys/class/nvme/nvme0")
        cpus = root / "proc/stat"
        cpus.write_text(
            "".join(line for line in cpus.read_text().splitlines(True) if not line.startswith("cpu7 "))
        )
        shutil.rmtree(root / "sys/class/infiniband/mlx4_0/ports/2")
        open_files.forget()  # on sysfs a removed device's kept descriptors fail with ENODEV; here they would not

        after = [runner.tick().reading for _ in range(2)]
        inventory = {(d.kind, d.name) for d in runner.inventory()}
    finally:
        runner.close()
    for reading in after:
        assert {d: v["success"] for d, v in reading.rows("sampler")} == dict.fromkeys(
            ["cpu", "disk", "hwmon", "jobs", "memory", "nic", "pressure", "rdma"], 1
        )  # every sampler still succeeds, on the same tick
        assert devices(reading, "disk") == devices(before, "disk") - {"nvme0n1"}
        assert devices(reading, "cpu") == devices(before, "cpu") - {"7"}
        assert devices(reading, "rdma") == devices(before, "rdma") - {"mlx4_0:2"}
    assert ("nvme", "nvme0") not in inventory and ("rdma", "mlx4_0:2") not in inventory
    assert ("rdma", "mlx4_0:1") in inventory


def test_an_interface_renamed_or_removed_while_sampling(tmp_path: Path) -> None:
    header = "Inter-| Receive | Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes ...\n"

    def interfaces(*names: str) -> None:
        (tmp_path / "proc/net").mkdir(parents=True, exist_ok=True)
        lines = "".join(f"  {n}: {' '.join(['7'] * 16)}\n" for n in names)
        (tmp_path / "proc/net/dev").write_text(header + lines)
        for n in names:
            (tmp_path / f"sys/class/net/{n}").mkdir(parents=True, exist_ok=True)
            (tmp_path / f"sys/class/net/{n}/operstate").write_text("up\n")

    interfaces("eth0", "eth1", "ñic0")
    nic = REGISTRY["nic"].factory(SamplerContext(paths=Paths(tmp_path / "proc", tmp_path / "sys")))
    assert devices(nic.sample(), "nic") == {"eth0", "eth1", "ñic0"}
    shutil.rmtree(tmp_path / "sys/class/net")
    interfaces("eth0", "lan1", "ñic0")  # eth1 renamed lan1 (udev), the rest as they were
    assert devices(nic.sample(), "nic") == {"eth0", "lan1", "ñic0"}
    assert {d.name for d in nic.inventory()} == {"eth0", "lan1", "ñic0"}
    interfaces("ñic0")  # and the others gone
    shutil.rmtree(tmp_path / "sys/class/net/eth0")
    assert devices(nic.sample(), "nic") == {"ñic0"}
