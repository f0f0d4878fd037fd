"""What every sampler shares: surviving garbage, slow sources once a second, kept file descriptors."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ironsight.agent.runner import Runner
from ironsight.agent.samplers import REGISTRY
from ironsight.agent.samplers.base import Paths, SamplerContext
from ironsight.agent.samplers.cpu import CpuSampler
from ironsight.core.reading import Value

from support.fixturetree import write


def test_every_sampler_survives_garbage_files(tmp_path: Path) -> None:
    junk = "\x00\xff garbage: 1 2 three\n" * 3
    for rel in (
        "proc/stat",
        "proc/loadavg",
        "proc/meminfo",
        "proc/diskstats",
        "proc/net/dev",
        "proc/net/snmp",
        "proc/pressure/io",
        "sys/class/infiniband/mlx5_0/ports/1/counters/port_rcv_data",
        "sys/class/infiniband/mlx5_0/ports/1/rate",
        "sys/class/hwmon/hwmon0/temp1_input",
        "sys/class/thermal/thermal_zone0/temp",
        "sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq",
    ):
        write(tmp_path, rel, junk)
    ctx = SamplerContext(paths=Paths(tmp_path / "proc", tmp_path / "sys"))
    runner = Runner([spec.factory(ctx) for name, spec in REGISTRY.items() if name != "gpu"], budget_s=5)
    tick = runner.tick()
    ok = {dev: v["success"] for dev, v in tick.reading.rows("sampler")}
    # Garbage parses to NULLs or nothing: no sampler raised.
    assert ok == {"cpu": 1, "memory": 1, "pressure": 1, "disk": 1, "nic": 1, "rdma": 1, "hwmon": 1, "jobs": 1}
    [(_, rdma)] = tick.reading.rows("rdma")
    assert rdma["port_data_received_bytes"] is None and rdma["rate_bytes_per_second"] is None
    runner.close()


def test_slow_sources_are_read_once_a_second_and_repeated_between(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ironsight.agent.samplers.hwmon import HwmonSampler

    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])  # samplers.base reads time.monotonic
    write(tmp_path, "proc/stat", "cpu  1 1 1 1\ncpu0 100 0 0 0 0 0 0 0 0 0\n")
    write(tmp_path, "proc/loadavg", "0.50 0.40 0.30 1/100 42\n")
    write(tmp_path, "sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq", "2000000\n")
    write(tmp_path, "sys/class/hwmon/hwmon0/name", "nvme\n")
    write(tmp_path, "sys/class/hwmon/hwmon0/temp1_input", "45000\n")
    ctx = SamplerContext(paths=Paths(tmp_path / "proc", tmp_path / "sys"))
    cpu, hwmon = CpuSampler(ctx), HwmonSampler(ctx)

    def tick() -> tuple[dict[str, Value], dict[str, Value], dict[str, Value]]:
        reading = cpu.sample()
        [(_, c)], [(_, load)] = reading.rows("cpu"), reading.rows("load")
        [(_, h)] = hwmon.sample().rows("hwmon")
        return c, load, h

    c, load, h = tick()
    assert (c["frequency_hertz"], load["load1"], h["temp_celsius"]) == (2e9, 0.5, 45.0)
    write(tmp_path, "proc/stat", "cpu  1 1 1 1\ncpu0 200 0 0 0 0 0 0 0 0 0\n")
    write(tmp_path, "proc/loadavg", "0.90 0.40 0.30 1/100 42\n")
    write(tmp_path, "sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq", "3000000\n")
    write(tmp_path, "sys/class/hwmon/hwmon0/temp1_input", "51000\n")
    clock[0] += 0.1  # the next tick at 0.1 s: /proc/stat again, the slow files not
    c, load, h = tick()
    assert c["user_seconds"] == 2.0
    assert (c["frequency_hertz"], load["load1"], h["temp_celsius"]) == (2e9, 0.5, 45.0)
    clock[0] += 0.9
    c, load, h = tick()
    assert (c["frequency_hertz"], load["load1"], h["temp_celsius"]) == (3e9, 0.9, 51.0)
    # A cpu coming online is read at once, not a second later.
    write(tmp_path, "proc/stat", "cpu  1 1 1 1\ncpu0 200 0 0 0 0 0 0 0 0 0\ncpu1 5 0 0 0 0 0 0 0 0 0\n")
    write(tmp_path, "sys/devices/system/cpu/cpu1/cpufreq/scaling_cur_freq", "1000000\n")
    clock[0] += 0.1
    rows = dict(cpu.sample().rows("cpu"))
    assert rows["1"]["frequency_hertz"] == 1e9 and rows["1"]["user_seconds"] == 0.05


def test_kept_descriptors_read_fresh_content_and_stay_bounded(tmp_path: Path) -> None:
    from ironsight.agent.samplers.base import OpenFiles

    files = OpenFiles()
    first = files.read("/proc/uptime")
    time.sleep(0.05)
    second = files.read("/proc/uptime")
    assert first is not None and second is not None
    assert float(second.split()[0]) > float(first.split()[0])  # procfs regenerates on a read at offset 0
    attr = tmp_path / "attr"
    attr.write_text("1\n")
    assert files.read(attr) == b"1\n"
    with open(attr, "r+") as f:  # rewritten in place, as sysfs attributes are
        f.write("2\n")
    assert files.read(attr) == b"2\n"
    for i in range(OpenFiles.MAX + 20):
        (tmp_path / f"f{i}").write_text(str(i))
        assert files.read(tmp_path / f"f{i}") == str(i).encode()
    assert len(files._fds) == OpenFiles.MAX
    assert files.read(tmp_path / "missing") is None
    big = tmp_path / "big"
    big.write_bytes(b"x" * (65536 * 2 + 5))
    assert len(files.read(big) or b"") == 65536 * 2 + 5
