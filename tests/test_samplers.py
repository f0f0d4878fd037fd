"""Samplers on odd kernels and broken files, by pointing their roots at temporary trees."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from ironsight.agent.runner import Runner
from ironsight.agent.samplers import REGISTRY
from ironsight.agent.samplers.base import BaseSampler, Paths, SamplerContext, open_files, read_int_fast
from ironsight.agent.samplers.cpu import CpuSampler, parse_stat
from ironsight.agent.samplers.disk import parse_diskstats
from ironsight.agent.samplers.memory import parse_meminfo
from ironsight.agent.samplers.nic import STATS64_FIELDS, fold_stats64, parse_net_dev, parse_snmp_tcp
from ironsight.agent.samplers.pressure import PressureSampler
from ironsight.agent.samplers.rdma import RdmaSampler, parse_rate, parse_state
from ironsight.core.reading import Reading


def write(root: Path, rel: str, text: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def test_stat_old_kernel_without_guest_columns_is_null_not_zero() -> None:
    cpus, host = parse_stat("cpu  1 2 3 4\ncpu0 100 200 300 400 500 600 700\nctxt 42\nprocs_running 3\n")
    assert cpus["0"]["user_seconds"] == 1.0
    assert cpus["0"]["softirq_seconds"] == 7.0
    assert cpus["0"]["steal_seconds"] is None
    assert cpus["0"]["guest_seconds"] is None
    assert host == {"context_switches": 42, "procs_running": 3}


@pytest.mark.parametrize(
    ("fields", "discards", "flushes"),
    [(14, None, None), (18, 5, None), (20, 5, 9)],
)
def test_diskstats_field_count_variants(fields: int, discards: int | None, flushes: int | None) -> None:
    values = [str(v) for v in (10, 1, 8, 1000, 20, 2, 16, 2000, 0, 3000, 4000, 5, 0, 64, 700, 9, 90)]
    line = "259 0 nvme0n1 " + " ".join(values[: fields - 3])
    [(name, v)] = parse_diskstats(line).items()
    assert name == "nvme0n1"
    assert v["read_bytes"] == 8 * 512 and v["written_bytes"] == 16 * 512
    assert v["read_time_seconds"] == 1.0 and v["io_time_weighted_seconds"] == 4.0
    assert v["discards_completed"] == discards
    assert v["flush_requests"] == flushes


def test_diskstats_skips_partitions_and_garbage() -> None:
    text = "8 1 sda1 1 1 1 1 1 1 1 1 1 1 1\n7 0 loop0 1 1 1 1 1 1 1 1 1 1 1\nbroken line\n8 0 sda x 1 1 1 1 1 1 1 1 1 1\n"
    out = parse_diskstats(text)
    assert list(out) == ["sda"]
    assert out["sda"]["reads_completed"] is None and out["sda"]["reads_merged"] == 1


def test_meminfo_without_memavailable() -> None:
    v = parse_meminfo("MemTotal: 1000 kB\nMemFree: 10 kB\nHugePages_Total: 4\nbogus\nDirty: x kB\n")
    assert v["mem_total_bytes"] == 1024000
    assert v["hugepages_total"] == 4
    assert v["mem_available_bytes"] is None
    assert v["dirty_bytes"] is None


def test_net_dev_and_netlink_fold_agree() -> None:
    s64 = dict.fromkeys(STATS64_FIELDS, 1)
    folded = fold_stats64(s64)
    # The kernel prints drop = dropped + missed, frame = 4 error kinds, carrier = 4 error kinds.
    line = "Inter-|\n face |\n  eth9: 1 1 1 2 1 4 1 1 1 1 1 1 1 1 4 1\n"
    assert parse_net_dev(line)["eth9"] == folded


def test_snmp_tcp() -> None:
    text = "Tcp: RtoAlgorithm ActiveOpens RetransSegs CurrEstab\nTcp: 1 5 227 3\n"
    v = parse_snmp_tcp(text)
    assert v["retrans_segs"] == 227 and v["active_opens"] == 5 and v["curr_estab"] == 3
    assert v["in_segs"] is None
    assert parse_snmp_tcp("Ip: 1\nIp: 2\n") == {}


def test_rdma_value_parsers(tmp_path: Path) -> None:
    # Counter files: a port without a PMA says so in words, which is NULL, not an error.
    write(tmp_path, "no_pma", "N/A (no PMA)\n")
    write(tmp_path, "count", "123\n")
    assert read_int_fast(str(tmp_path / "no_pma")) is None
    assert read_int_fast(str(tmp_path / "count")) == 123
    assert parse_state("4: ACTIVE") == 4 and parse_state("garbage") is None
    assert parse_rate("100 Gb/sec (4X EDR)") == 12_500_000_000
    assert parse_rate("2.5 Gb/sec (1X SDR)") == 312_500_000


def test_pressure_missing_is_empty_not_error(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    s = PressureSampler(SamplerContext(paths=Paths(tmp_path / "proc", tmp_path / "sys")))
    assert s.sample().tables == {}


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
    assert ok == {"cpu": 1, "memory": 1, "pressure": 1, "disk": 1, "nic": 1, "rdma": 1, "hwmon": 1}
    [(_, rdma)] = tick.reading.rows("rdma")
    assert rdma["port_data_received_bytes"] is None and rdma["rate_bytes_per_second"] is None
    runner.close()


def test_rdma_reads_the_files_it_found_and_looks_again_when_a_port_goes(tmp_path: Path) -> None:
    import shutil

    port = "sys/class/infiniband/mlx5_0/ports/1"
    write(tmp_path, f"{port}/counters/port_rcv_data", "100\n")
    write(tmp_path, f"{port}/hw_counters/np_cnp_sent", "7\n")
    write(tmp_path, f"{port}/state", "4: ACTIVE\n")
    sampler = RdmaSampler(SamplerContext(paths=Paths(tmp_path / "proc", tmp_path / "sys")))
    [(device, v)] = sampler.sample().rows("rdma")
    assert device == "mlx5_0:1" and v["port_data_received_bytes"] == 400 and v["np_cnp_sent"] == 7
    assert v["state_id"] == 4 and v["port_data_transmitted_bytes"] is None
    write(tmp_path, f"{port}/counters/port_rcv_data", "250\n")  # a tick rereads the same file
    [(_, v)] = sampler.sample().rows("rdma")
    assert v["port_data_received_bytes"] == 1000
    # The HCA goes (driver unloaded) and another comes: no row for the gone port, and the
    # next tick finds the new one without waiting for the minute's scan.
    shutil.rmtree(tmp_path / "sys/class/infiniband/mlx5_0")
    open_files.forget()  # on sysfs the kept descriptors now fail with ENODEV
    write(tmp_path, "sys/class/infiniband/mlx5_1/ports/1/counters/port_xmit_data", "3\n")
    write(tmp_path, "sys/class/infiniband/mlx5_1/ports/1/state", "4: ACTIVE\n")
    assert sampler.sample().rows("rdma") == []
    [(device, v)] = sampler.sample().rows("rdma")
    assert device == "mlx5_1:1" and v["port_data_transmitted_bytes"] == 12


def test_slow_sources_are_read_once_a_second_and_repeated_between(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ironsight.agent.samplers import base
    from ironsight.agent.samplers.hwmon import HwmonSampler

    clock = [1000.0]
    monkeypatch.setattr(base.time, "monotonic", lambda: clock[0])
    write(tmp_path, "proc/stat", "cpu  1 1 1 1\ncpu0 100 0 0 0 0 0 0 0 0 0\n")
    write(tmp_path, "proc/loadavg", "0.50 0.40 0.30 1/100 42\n")
    write(tmp_path, "sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq", "2000000\n")
    write(tmp_path, "sys/class/hwmon/hwmon0/name", "nvme\n")
    write(tmp_path, "sys/class/hwmon/hwmon0/temp1_input", "45000\n")
    ctx = SamplerContext(paths=Paths(tmp_path / "proc", tmp_path / "sys"))
    cpu, hwmon = CpuSampler(ctx), HwmonSampler(ctx)

    def tick() -> tuple[dict[str, object], dict[str, object], dict[str, object]]:
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


def test_missing_proc_stat_is_a_reported_failure(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    runner = Runner(
        [CpuSampler(SamplerContext(paths=Paths(tmp_path / "proc", tmp_path / "sys")))], budget_s=5
    )
    [(name, v)] = runner.tick().reading.rows("sampler")
    assert name == "cpu" and v["success"] == 0
    runner.close()


class Hanging(BaseSampler):
    name = "hanging"

    def __init__(self, release: threading.Event) -> None:
        self.release = release

    def sample(self) -> Reading:
        self.release.wait(30)
        return Reading()


class Quick(BaseSampler):
    name = "quick"

    def __init__(self) -> None:
        self.runs = 0

    def sample(self) -> Reading:
        self.runs += 1
        r = Reading()
        r.add("load", "", {"load1": float(self.runs)})
        return r


def test_a_hanging_sampler_does_not_stall_the_others() -> None:
    release = threading.Event()
    quick = Quick()
    runner = Runner([Hanging(release), quick], budget_s=0.2)
    start = time.monotonic()
    ticks = [runner.tick() for _ in range(5)]
    elapsed = time.monotonic() - start
    release.set()
    # The first tick waits out the budget once; later ticks skip the stuck sampler at once.
    assert elapsed < 0.2 * 2 + 0.5
    assert quick.runs == 5
    for tick in ticks:
        status = {dev: v["success"] for dev, v in tick.reading.rows("sampler")}
        assert status == {"hanging": 0, "quick": 1}
    assert [t.reading.rows("load")[0][1]["load1"] for t in ticks] == [1.0, 2.0, 3.0, 4.0, 5.0]
    runner.close()


def test_a_fifo_in_the_tree_blocks_only_its_sampler(tmp_path: Path, procfs_tree: Path) -> None:
    import os
    import shutil

    root = tmp_path / "t"
    shutil.copytree(
        procfs_tree / "proc", root / "proc", symlinks=True, ignore=shutil.ignore_patterns("self", "[0-9]*")
    )
    (root / "sys").mkdir()
    os.unlink(root / "proc" / "diskstats")
    os.mkfifo(root / "proc" / "diskstats")  # open() blocks until a writer appears: a hung read
    ctx = SamplerContext(paths=Paths(root / "proc", root / "sys"))
    runner = Runner([REGISTRY[n].factory(ctx) for n in ("cpu", "memory", "disk")], budget_s=0.3)
    try:
        ticks = [runner.tick() for _ in range(3)]
        for tick in ticks:
            status = {dev: v["success"] for dev, v in tick.reading.rows("sampler")}
            assert status == {"cpu": 1, "memory": 1, "disk": 0}
            assert len(tick.reading.rows("cpu")) > 0
    finally:
        with open(root / "proc" / "diskstats", "w"):  # unblock the stuck reader thread
            pass
        runner.close()


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
