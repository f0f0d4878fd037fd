"""`ironsight-agent --once` on node_exporter's and prometheus/procfs's fixture trees prints what they expect."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.fixturetree import need_shared
from support.processes import BIN

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]

# Families node_exporter prints from the same sources our samplers read, and
# at least how many series of each its e2e output has for these trees.
COMPARED = {
    "node_cpu_seconds_total": 64,
    "node_cpu_core_throttles_total": 4,
    "node_cpu_package_throttles_total": 2,
    "node_cpu_scaling_frequency_hertz": 4,
    "node_cpu_scaling_frequency_max_hertz": 4,
    "node_load1": 1,
    "node_load5": 1,
    "node_load15": 1,
    "node_context_switches_total": 1,
    "node_intr_total": 1,
    "node_forks_total": 1,
    "node_procs_running": 1,
    "node_procs_blocked": 1,
    "node_memory_MemTotal_bytes": 1,
    "node_memory_MemFree_bytes": 1,
    "node_memory_Buffers_bytes": 1,
    "node_memory_Cached_bytes": 1,
    "node_memory_Dirty_bytes": 1,
    "node_memory_SwapTotal_bytes": 1,
    "node_memory_SwapFree_bytes": 1,
    "node_memory_SwapCached_bytes": 1,
    "node_pressure_cpu_waiting_seconds_total": 1,
    "node_pressure_io_waiting_seconds_total": 1,
    "node_pressure_io_stalled_seconds_total": 1,
    "node_pressure_irq_stalled_seconds_total": 1,
    "node_disk_reads_completed_total": 15,
    "node_disk_read_bytes_total": 15,
    "node_disk_read_time_seconds_total": 15,
    "node_disk_writes_completed_total": 15,
    "node_disk_written_bytes_total": 15,
    "node_disk_write_time_seconds_total": 15,
    "node_disk_io_now": 15,
    "node_disk_io_time_seconds_total": 15,
    "node_disk_io_time_weighted_seconds_total": 15,
    "node_disk_discards_completed_total": 2,
    "node_disk_discard_time_seconds_total": 2,
    "node_disk_flush_requests_total": 1,
    "node_infiniband_port_data_received_bytes_total": 2,
    "node_infiniband_port_data_transmitted_bytes_total": 2,
    "node_infiniband_port_packets_received_total": 1,
    "node_infiniband_unicast_packets_received_total": 2,
    "node_infiniband_link_downed_total": 2,
    "node_infiniband_port_transmit_wait_total": 1,
    "node_infiniband_state_id": 3,
    "node_infiniband_physical_state_id": 3,
    "node_infiniband_rate_bytes_per_second": 3,
    "node_hwmon_temp_celsius": 15,
    "node_hwmon_temp_crit_celsius": 12,
    "node_hwmon_temp_max_celsius": 12,
    "node_thermal_zone_temp": 1,
    "node_netstat_Tcp_RetransSegs": 1,
}


def parse(text: str) -> Series:
    out: Series = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def agent_once(proc: Path, sys_: Path, *flags: str) -> str:
    result = subprocess.run(
        [str(BIN / "ironsight-agent"), "--once", f"--path.procfs={proc}", f"--path.sysfs={sys_}", *flags],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def expected() -> Series:
    text = (need_shared("node_exporter") / "e2e-output.txt").read_text()
    # e2e-output.txt has the HELP/TYPE lines and samples of every collector;
    # keep only the families compared here.
    lines = [line for line in text.splitlines() if line.split("{")[0].split(" ")[0] in COMPARED]
    return parse("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def ours(node_exporter_tree: Path) -> Series:
    # No /proc/net/dev in node_exporter's tree (it reads NICs over netlink), so
    # the nic sampler reports TCP counters only there.
    return parse(agent_once(node_exporter_tree / "proc", node_exporter_tree / "sys"))


def test_every_expected_series_is_printed_with_the_same_value(expected: Series, ours: Series) -> None:
    per_family = Counter(name for name, _ in expected)
    for family, minimum in COMPARED.items():
        assert per_family[family] >= minimum, f"e2e-output.txt has only {per_family[family]} {family}"
    missing = [key for key in expected if key not in ours]
    assert not missing, f"{len(missing)} series node_exporter prints are missing, e.g. {missing[:5]}"
    wrong = [
        (key, expected[key], ours[key])
        for key in expected
        if ours[key] != pytest.approx(expected[key], rel=1e-9)
    ]
    assert not wrong, f"{len(wrong)} values differ, e.g. {wrong[:5]}"


def test_no_extra_series_in_compared_families(expected: Series, ours: Series) -> None:
    extra = [key for key in ours if key[0] in COMPARED and key not in expected]
    assert not extra, f"series node_exporter does not print: {extra[:5]}"


def test_infiniband_data_counts_4_byte_words(node_exporter_tree: Path, ours: Series) -> None:
    words = int(
        (node_exporter_tree / "sys/class/infiniband/mlx4_0/ports/1/counters/port_rcv_data").read_text()
    )
    key = ("node_infiniband_port_data_received_bytes_total", frozenset({("device", "mlx4_0"), ("port", "1")}))
    assert ours[key] == words * 4


@pytest.fixture(scope="module")
def procfs_ours(procfs_tree: Path) -> Series:
    return parse(agent_once(procfs_tree / "proc", procfs_tree / "sys"))


@pytest.mark.slow
def test_net_dev_from_procfs_fixture(procfs_ours: Series) -> None:
    eth0 = frozenset({("device", "eth0")})
    assert procfs_ours[("node_network_receive_bytes_total", eth0)] == 874354587
    assert procfs_ours[("node_network_transmit_bytes_total", eth0)] == 563352563
    assert procfs_ours[("node_network_receive_packets_total", eth0)] == 1036395
    lo = frozenset({("device", "lo")})
    assert procfs_ours[("node_network_receive_bytes_total", lo)] == 1664039048


def test_mlx5_hw_counters_from_procfs_fixture(procfs_ours: Series) -> None:
    port = frozenset({("device", "mlx5_0"), ("port", "1")})
    # prometheus/procfs's own test: 18126345378 words = 72505381512 bytes.
    assert procfs_ours[("node_infiniband_port_data_received_bytes_total", port)] == 72505381512
    assert procfs_ours[("node_infiniband_port_data_transmitted_bytes_total", port)] == 2880761508848 * 4
    assert procfs_ours[("ironsight_rdma_out_of_sequence_total", port)] == 1
    assert procfs_ours[("ironsight_rdma_packet_seq_err_total", port)] == 1
    assert procfs_ours[("ironsight_rdma_local_ack_timeout_err_total", port)] == 131
    # Counters this NIC does not have are absent, not 0.
    assert ("ironsight_rdma_np_cnp_sent_total", port) not in procfs_ours


def test_negative_thermal_zone(procfs_ours: Series) -> None:
    temps = {dict(k[1])["zone"]: v for k, v in procfs_ours.items() if k[0] == "node_thermal_zone_temp"}
    assert temps["1"] == -44.0


def test_gpu_absence_is_said_once_and_the_rest_is_sampled() -> None:
    result = subprocess.run(
        [str(BIN / "ironsight-agent"), "--once"], capture_output=True, text=True, timeout=60, check=True
    )
    if "NVML" not in result.stderr:
        pytest.skip("this machine has NVML; absence cannot be shown here")
    assert len([line for line in result.stderr.splitlines() if "NVML" in line]) == 1
    series = parse(result.stdout)
    assert any(name == "node_cpu_seconds_total" for name, _ in series)
    ok = {dict(k[1])["sampler"]: v for k, v in series.items() if k[0] == "ironsight_sampler_success"}
    assert ok["gpu"] == 1 and ok["cpu"] == 1 and ok["memory"] == 1
