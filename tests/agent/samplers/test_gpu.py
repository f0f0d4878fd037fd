"""The real GPU sampler against an NVML double fed from real nvidia-smi captures."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import pynvml
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ironsight.agent.once import log_once
from ironsight.agent.samplers.base import SamplerContext
from ironsight.agent.samplers.gpu import GpuSampler
from ironsight.core.exposition import render

from support.fixturetree import need_shared
from support.nvml_double import H100, CaptureNvml, NVMLError, capture, number, query_gpu, query_xml

MIB = 2**20


L40S = "linux-x86_64__nvidia-l40s__595.80.txt"


CSV_CARDS = [
    "linux-x86_64__nvidia-h100-80gb-hbm3__590.48.01.txt",
    "linux-x86_64__nvidia-h200__590.48.01.txt",
    "linux-x86_64__nvidia-l40s__595.80.txt",
    "linux-x86_64__nvidia-geforce-rtx-4080-super__595.71.05.txt",
    "linux-x86_64__nvidia-h100-mig__590.48.01.txt",
]
XML_CARDS = ["a100-sxm4-v12.xml", "a10g.xml", "tesla-t4.xml", "rtx-3090-v12.xml"]
CAPTURES = [(c, p) for c in CSV_CARDS for p in ("idle", "load")] + [(c, "xml") for c in XML_CARDS]


def load(card: str, phase: str) -> dict[str, str]:
    if phase == "xml":
        return query_xml(need_shared("nvidia_smi_xml") / card)
    return query_gpu(capture(card), phase)


def scaled(raw: str, factor: float = 1.0) -> float | None:
    v = number(raw)
    return None if v is None else v * factor


@pytest.mark.parametrize(
    ("card", "phase"), CAPTURES, ids=[f"{c.split('__')[1] if '__' in c else c}-{p}" for c, p in CAPTURES]
)
def test_values_equal_the_capture_in_base_units(card: str, phase: str) -> None:
    q = load(card, phase)
    nvml = CaptureNvml(q)
    sampler = GpuSampler(SamplerContext(nvml=nvml, clock=nvml.now))
    [(device, v)] = sampler.sample().rows("gpu")
    assert device == "0"
    assert v["util_gpu_percent"] == number(q["utilization.gpu"])  # None where the capture says N/A (MIG)
    assert v["util_memory_percent"] == number(q["utilization.memory"])
    # nvidia-smi's (and DCGM's) used, without the driver's reservation; total less it, so that
    # total - used is nvidia-smi's free.
    assert v["memory_used_bytes"] == scaled(q["memory.used"], MIB)
    reserved = number(q.get("memory.reserved", "")) or 0
    assert v["memory_total_bytes"] == scaled(q["memory.total"], MIB) - reserved * MIB
    free = number(q.get("memory.free", ""))
    if free is not None:
        assert (
            abs(v["memory_total_bytes"] - v["memory_used_bytes"] - free * MIB) <= 2 * MIB
        )  # each of the four rounded to MiB
    assert v["sm_clock_hertz"] == scaled(q["clocks.current.sm"], 1e6)
    assert v["mem_clock_hertz"] == scaled(q["clocks.current.memory"], 1e6)
    assert v["sm_clock_max_hertz"] == scaled(q["clocks.max.sm"], 1e6)
    assert v["mem_clock_max_hertz"] == scaled(q["clocks.max.memory"], 1e6)
    assert v["temperature_celsius"] == number(q["temperature.gpu"])
    assert v["memory_temperature_celsius"] == number(q["temperature.memory"])
    # Absolute thresholds exist in the XML captures; the CSV ones carry none (NULL).
    assert v["temperature_slowdown_celsius"] == number(q.get("temperature.slowdown", "[N/A]"))
    assert v["temperature_shutdown_celsius"] == number(q.get("temperature.shutdown", "[N/A]"))
    power = number(q["power.draw"])
    assert v["power_watts"] == (None if power is None else pytest.approx(power, abs=1e-3))
    assert v["power_limit_watts"] == number(q["enforced.power.limit"])
    assert v["clocks_event_reasons"] == number(q["clocks_event_reasons.active"])
    assert v["pcie_link_gen"] == number(q["pcie.link.gen.gpucurrent"])
    assert v["pcie_link_width"] == number(q["pcie.link.width.current"])
    assert v["pcie_replays"] == number(q.get("pcie.replay", "[N/A]"))
    assert v["ecc_sbe_volatile"] == number(q.get("ecc.errors.corrected.volatile.total", "[N/A]"))
    assert v["remapped_rows_correctable"] == number(q.get("remapped_rows.correctable", "[N/A]"))
    if "clocks_event_reasons_counters.sw_power_cap" in q:
        assert v["throttle_sw_power_seconds"] == pytest.approx(
            number(q["clocks_event_reasons_counters.sw_power_cap"]) / 1e6
        )
    # Not in any capture: NULL, never 0.
    assert v["energy_joules"] is None
    assert v["gpm_sm_active_ratio"] is None
    # PCIe throughput: counters read twice, 10 s apart, give the captured rate (KB/s of 1024 bytes).
    nvml.advance(10.0)
    [(_, later)] = sampler.sample().rows("gpu")
    for column, key in (("pcie_tx_bytes", "pcie.tx_util"), ("pcie_rx_bytes", "pcie.rx_util")):
        rate = number(q.get(key, "[N/A]"))
        if rate is None:
            assert later[column] is None
        else:
            assert (later[column] - v[column]) / 10.0 == pytest.approx(rate * 1024)
    [inv] = sampler.inventory()
    assert inv.attrs["model"] == q["name"] and inv.attrs["uuid"] == q["uuid"]
    assert inv.attrs["pci_bus_id"] == q["pci.bus_id"] and inv.attrs["driver"] == q["driver_version"]


def test_dcgm_names_and_labels_on_the_exposition() -> None:
    path = capture(H100)
    sampler = GpuSampler(SamplerContext(nvml=CaptureNvml(path, "load")))
    text = render(sampler.sample(), sampler.inventory(), "node1").decode()
    q = query_gpu(path, "load")
    labels = {
        "gpu": "0",
        "UUID": q["uuid"],
        "modelName": q["name"],
        "pci_bus_id": q["pci.bus_id"],
        "hostname": "node1",
    }
    samples = {s.name: s for fam in text_string_to_metric_families(text) for s in fam.samples}
    for name, key in (
        ("DCGM_FI_DEV_GPU_UTIL", "utilization.gpu"),
        ("DCGM_FI_DEV_FB_USED", "memory.used"),
        ("DCGM_FI_DEV_GPU_TEMP", "temperature.gpu"),
        ("DCGM_FI_DEV_SM_CLOCK", "clocks.current.sm"),
    ):
        assert samples[name].labels == labels
        assert samples[name].value == number(q[key]), name
    assert samples["DCGM_FI_DEV_POWER_USAGE"].value == pytest.approx(number(q["power.draw"]))
    assert "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION" not in samples  # not available: no sample at all


def test_function_not_found_is_null_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    nvml = CaptureNvml(capture(H100), "load", missing=("nvmlDeviceGetCurrentClocksEventReasons",))
    sampler = GpuSampler(SamplerContext(nvml=nvml, clock=nvml.now))
    with caplog.at_level(logging.INFO):
        first = sampler.sample().rows("gpu")[0][1]
        sampler.sample()
    # The old name is asked instead: same value.
    assert first["clocks_event_reasons"] == int(
        query_gpu(capture(H100), "load")["clocks_event_reasons.active"], 16
    )
    assert sum("nvmlDeviceGetCurrentClocksEventReasons" in r.message for r in caplog.records) <= 1


def test_what_a_gpu_does_not_support_is_asked_once_a_minute_not_every_tick() -> None:
    nvml = CaptureNvml(capture(H100), "load")  # no energy counter in this capture: NotSupported
    calls: list[str] = []
    real_energy = nvml.nvmlDeviceGetTotalEnergyConsumption

    def energy(h: object) -> int:
        calls.append("energy")
        return real_energy(h)

    nvml.nvmlDeviceGetTotalEnergyConsumption = energy  # type: ignore[method-assign]
    sampler = GpuSampler(SamplerContext(nvml=nvml, clock=nvml.now))
    gpus = len(sampler.gpus)
    for _ in range(5):
        nvml.advance(10)  # ticks ten seconds apart: the energy counter is due at each
        rows = sampler.sample().rows("gpu")
        assert all(values["energy_joules"] is None for _, values in rows)
        assert all(values["power_watts"] is not None for _, values in rows)  # supported: every tick
    assert len(calls) == gpus  # once per GPU, not 5 times
    sampler.inventory()  # the minute's refresh asks again
    nvml.advance(10)
    sampler.sample()
    assert len(calls) == 2 * gpus


def test_missing_library_is_a_normal_state(caplog: pytest.LogCaptureFixture) -> None:
    nvml = CaptureNvml(capture(H100), "idle")
    nvml.init_error = pynvml.NVML_ERROR_LIBRARY_NOT_FOUND
    log_once._seen.discard("gpu.unavailable")
    with caplog.at_level(logging.WARNING):
        sampler = GpuSampler(SamplerContext(nvml=nvml, clock=nvml.now))
        GpuSampler(SamplerContext(nvml=nvml))
    assert sampler.sample().tables == {}
    assert sampler.inventory() == []
    assert sum("NVML not available" in r.message for r in caplog.records) == 1


def test_xid_events_become_rows() -> None:
    nvml = CaptureNvml(capture(H100), "load")
    sampler = GpuSampler(SamplerContext(nvml=nvml, clock=nvml.now))
    assert nvml.registered == pynvml.nvmlEventTypeXidCriticalError
    nvml.xids = [79, 48]
    rows = sampler.sample().rows("gpu_xid")
    assert rows == [("0", {"xid": 79}), ("0", {"xid": 48})]
    assert sampler.sample().rows("gpu_xid") == []


@pytest.mark.slow
def test_the_double_drives_an_agent_into_a_real_collector(collector: object) -> None:
    import json
    import threading

    from ironsight.agent.batch import Batcher
    from ironsight.agent.loop import sample_loop
    from ironsight.agent.runner import Runner
    from ironsight.agent.samplers.base import Paths
    from ironsight.agent.stream import Sender

    from support.processes import CollectorProcess, run_cli

    assert isinstance(collector, CollectorProcess)
    q = load(CSV_CARDS[0], "load")
    runner = Runner([GpuSampler(SamplerContext(nvml=CaptureNvml(q)))], budget_s=1.0)
    sender = Sender(collector.target)
    sender.start()
    try:
        ticks = sample_loop(
            runner,
            Batcher("gpu-node", "boot-1", 0.2),
            Paths(),
            [sender],
            threading.Event(),
            0.5,
            duration_s=2.0,
        )
    finally:
        sender.stop()
        runner.close()
    assert ticks >= 8 and sender.acked >= 3 and sender.pending() == 0
    sql = (
        "SELECT count(*) AS n, min(util_gpu_percent) AS util, max(memory_used_bytes) AS mem, "
        "max(temperature_celsius) AS temp, max(power_watts) AS power, max(sm_clock_hertz) AS sm, "
        "count(energy_joules) AS energy_rows FROM gpu WHERE node = 'gpu-node'"
    )
    [row] = json.loads(run_cli("--collector", collector.target, "--format", "json", "query", sql).stdout)
    assert row["n"] == ticks
    assert row["util"] == number(q["utilization.gpu"])
    assert row["mem"] == number(q["memory.used"]) * MIB
    assert row["temp"] == number(q["temperature.gpu"])
    assert row["power"] == pytest.approx(number(q["power.draw"]))
    assert row["sm"] == number(q["clocks.current.sm"]) * 1e6
    assert row["energy_rows"] == 0  # NULL all along, not 0
    nodes = run_cli(
        "--collector",
        collector.target,
        "--format",
        "json",
        "query",
        "SELECT attrs['model'] AS m FROM devices WHERE node = 'gpu-node' AND kind = 'gpu'",
    )
    assert json.loads(nodes.stdout) == [{"m": q["name"]}]


def test_a_gpu_fallen_off_the_bus_costs_only_itself(caplog: pytest.LogCaptureFixture) -> None:
    nvml = CaptureNvml(capture(H100), "load")
    nvml.count = 2
    sampler = GpuSampler(SamplerContext(nvml=nvml, clock=nvml.now))
    first = sampler.sample()
    assert [d for d, _ in first.rows("gpu")] == ["0", "1"]
    nvml.lost = {1}  # NVML_ERROR_GPU_IS_LOST from every call on GPU 1 from now on
    with caplog.at_level(logging.WARNING, logger="ironsight.agent"):
        ticks = [sampler.sample() for _ in range(3)]
    assert [[d for d, _ in t.rows("gpu")] for t in ticks] == [["0"]] * 3  # GPU 0 every tick, all its values
    assert ticks[0].rows("gpu")[0][1]["power_watts"] == first.rows("gpu")[0][1]["power_watts"]
    assert [t.rows("gpu_xid") for t in ticks] == [[("1", {"xid": 79})], [], []]  # the driver's XID 79, once
    lost = [r.getMessage() for r in caplog.records if "lost" in r.getMessage()]
    assert len(lost) == 1 and lost[0].startswith(f"gpu 1 ({nvml.q['uuid']}, {nvml.q['pci.bus_id']}): lost")
    inventory = {d.name: d.attrs for d in sampler.inventory()}
    assert inventory["1"]["state"] == "lost" and "state" not in inventory["0"]


H200 = "linux-x86_64__nvidia-h200__590.48.01.txt"
REAL_H200 = Path(__file__).resolve().parents[2] / "traces" / "h200"


def test_pcie_byte_counters_keep_growing_across_32_bit_wraps() -> None:
    """An H200 reports its PCIe byte counters as 32-bit values that wrap at 2**32; stored, they only
    grow, each tick's increment the bytes that passed (one wrap a tick at most: below 4.29 GB/s
    at --interval 1, docs/metrics.md)."""
    nvml = CaptureNvml(capture(H200), "load")
    nvml.pcie_counter_bits = 32
    sampler = GpuSampler(SamplerContext(nvml=nvml, clock=nvml.now))
    rate = number(nvml.q["pcie.rx_util"].split()[0]) * 1024  # KB/s as nvidia-smi says it, in bytes/s
    seen = []
    for _ in range(30):
        nvml.advance(60)
        [(_, v)] = sampler.sample().rows("gpu")
        seen.append(v["pcie_rx_bytes"])
    assert seen[-1] - seen[0] > 2 * 2**32  # wrapped twice or more on the way
    for a, b in itertools.pairwise(seen):
        assert b - a == pytest.approx(rate * 60, abs=2)


def test_without_the_second_memory_call_used_counts_the_reservation() -> None:
    """Drivers before R510 have only NVML's first memory call, whose used includes the driver's
    reservation; the agent reports what it has rather than nothing."""
    q = query_gpu(capture(H200), "idle")
    sampler = GpuSampler(SamplerContext(nvml=CaptureNvml(q, missing=("nvmlMemory_v2",))))
    [(_, v)] = sampler.sample().rows("gpu")
    reserved = number(q["memory.reserved"])
    assert reserved and reserved > 0
    assert v["memory_used_bytes"] == (number(q["memory.used"]) + reserved) * MIB
    assert v["memory_total_bytes"] == number(q["memory.total"]) * MIB


def test_the_double_fed_a_real_h200_answers_as_such_a_card_did() -> None:
    """Our own capture of a lent H200 (idle), through the double, against the real agent's one-shot
    answer on an H200 of the same kind (tests/traces/h200/README.md): the values that are the
    card's and driver's, not the moment's, in dcgm-exporter's names."""
    [path] = REAL_H200.glob("linux-x86_64__nvidia-h200__*.txt")
    sampler = GpuSampler(SamplerContext(nvml=CaptureNvml(path, "idle")))
    ours = {
        s.name: s.value
        for fam in text_string_to_metric_families(
            render(sampler.sample(), sampler.inventory(), "h200").decode()
        )
        for s in fam.samples
    }
    real = {
        s.name: s.value
        for fam in text_string_to_metric_families((REAL_H200 / "agent-once.prom").read_text())
        for s in fam.samples
        if s.labels.get("gpu") == "0"
    }
    # nvidia-smi's capture rounds to MiB; NVML answers in bytes.
    assert ours["DCGM_FI_DEV_FB_FREE"] == pytest.approx(real["DCGM_FI_DEV_FB_FREE"], abs=1)
    assert ours["ironsight_gpu_memory_total_bytes"] == pytest.approx(
        real["ironsight_gpu_memory_total_bytes"], abs=MIB
    )
    for name in (
        "DCGM_FI_DEV_FB_USED",  # 0 MiB idle: the driver's 616 MiB reservation is not "used"
        "DCGM_FI_DEV_POWER_MGMT_LIMIT",
        "DCGM_FI_DEV_MEM_CLOCK",
        "ironsight_gpu_sm_clock_max_hertz",
        "ironsight_gpu_pcie_link_gen",
        "ironsight_gpu_pcie_link_width",
    ):
        assert ours[name] == real[name], name
    assert real["DCGM_FI_DEV_FB_USED"] == 0


def test_the_costly_calls_are_made_once_a_second_at_sub_second_intervals() -> None:
    """At --interval 0.1 the energy counter, the driver's samples and the field values are read on
    one tick in nine and repeated between; what is cheap (utilization, power, clocks) every tick."""
    nvml = CaptureNvml(capture(H200), "load")
    counted: dict[str, int] = {}
    for name in ("nvmlDeviceGetTotalEnergyConsumption", "nvmlDeviceGetSamples", "nvmlDeviceGetFieldValues",
                 "nvmlDeviceGetPowerUsage"):  # fmt: skip
        real = getattr(nvml, name)

        def counting(*args: object, _real: object = real, _name: str = name) -> object:
            counted[_name] = counted.get(_name, 0) + 1
            return _real(*args)

        setattr(nvml, name, counting)
    sampler = GpuSampler(SamplerContext(nvml=nvml, clock=nvml.now))
    rows = []
    for _ in range(27):  # 2.7 seconds at 0.1 s
        rows.append(dict(sampler.sample().rows("gpu"))["0"])
        nvml.advance(0.1)
    assert counted["nvmlDeviceGetPowerUsage"] == 27
    assert counted["nvmlDeviceGetFieldValues"] == counted["nvmlDeviceGetSamples"] == 3
    # Between the reads each tick repeats the last one: a counter as of then, never a hole.
    assert all(r["pcie_rx_bytes"] is not None and r["util_gpu_sampled_percent"] is not None for r in rows)
    assert len({r["pcie_rx_bytes"] for r in rows}) == 3


def test_pcie_counters_follow_gpm_where_the_gpu_has_it() -> None:
    """On a GPU with GPM the PCIe counters grow by GPM's rates times the seconds between its samples,
    so a 55 GB/s copy (twelve wraps a second of the 32-bit counter) is counted whole."""
    nvml = CaptureNvml(capture(H200), "load")
    nvml.pcie_counter_bits = 32
    nvml.gpm = {
        "NVML_GPM_METRIC_SM_UTIL": 93.5,
        "NVML_GPM_METRIC_PCIE_RX_PER_SEC": 52_000.0,  # MiB/s: 54.5 GB/s
        "NVML_GPM_METRIC_PCIE_TX_PER_SEC": 900.0,
    }
    sampler = GpuSampler(SamplerContext(nvml=nvml, clock=nvml.now))
    rows = []
    for _ in range(6):
        rows.append(dict(sampler.sample().rows("gpu"))["0"])
        nvml.advance(1)
    assert rows[0]["gpm_sm_active_ratio"] is None  # GPM's rates need two samples
    assert all(r["gpm_sm_active_ratio"] == pytest.approx(0.935) for r in rows[1:])
    assert rows[1]["pcie_rx_bytes"] > rows[0]["pcie_rx_bytes"]  # from the driver's counter on
    for a, b in itertools.pairwise(rows[1:]):
        assert b["pcie_rx_bytes"] - a["pcie_rx_bytes"] == 52_000 * MIB
        assert b["pcie_tx_bytes"] - a["pcie_tx_bytes"] == 900 * MIB


def test_the_energy_counter_is_read_every_ten_seconds_and_repeated_between() -> None:
    """The costliest NVML call (3.0 ms on an H200): a counter, so a reading every 10 s loses no joules."""
    nvml = CaptureNvml(capture(H200), "load")
    reads: list[float] = []

    def energy(h: object) -> int:
        reads.append(nvml.clock)
        return round(nvml.clock * 700_000)  # mJ: 700 W since the double's start

    nvml.nvmlDeviceGetTotalEnergyConsumption = energy  # type: ignore[method-assign]
    sampler = GpuSampler(SamplerContext(nvml=nvml, clock=nvml.now))
    seen = []
    for _ in range(25):  # 25 s at --interval 1
        seen.append(dict(sampler.sample().rows("gpu"))["0"]["energy_joules"])
        nvml.advance(1)
    assert reads == [0.0, 10.0, 20.0]
    assert seen == [0.0] * 10 + [7000.0] * 10 + [14000.0] * 5


def test_gpm_failing_costs_only_its_own_values(caplog: pytest.LogCaptureFixture) -> None:
    """A driver refusing GPM's metrics (a metric it does not know, a reset) leaves GPM's columns NULL
    and says so once; the rest of the GPU's row is stored as ever, and GPM is asked again next tick."""
    nvml = CaptureNvml(capture(H200), "load")
    nvml.gpm = {"NVML_GPM_METRIC_SM_UTIL": 50.0}
    refuse = [True]
    real_get = nvml.nvmlGpmMetricsGet

    def metrics_get(request: object) -> object:
        if refuse[0]:
            raise NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return real_get(request)

    nvml.nvmlGpmMetricsGet = metrics_get  # type: ignore[method-assign]
    sampler = GpuSampler(SamplerContext(nvml=nvml, clock=nvml.now))
    with caplog.at_level(logging.INFO, logger="ironsight.agent"):
        rows = []
        for _ in range(4):
            rows.append(dict(sampler.sample().rows("gpu"))["0"])
            nvml.advance(1)
    assert all(r["gpm_sm_active_ratio"] is None and r["power_watts"] is not None for r in rows)
    assert sum("GPM" in rec.getMessage() for rec in caplog.records) == 1
    refuse[0] = False
    for _ in range(2):
        rows.append(dict(sampler.sample().rows("gpu"))["0"])
        nvml.advance(1)
    assert rows[-1]["gpm_sm_active_ratio"] == pytest.approx(0.5)
