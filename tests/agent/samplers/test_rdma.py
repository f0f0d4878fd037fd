"""rdma: sysfs value formats, and the scan that finds HCAs, ports and counter files."""

from __future__ import annotations

from pathlib import Path

from ironsight.agent.samplers.base import Paths, SamplerContext, open_files, read_int_fast
from ironsight.agent.samplers.rdma import RdmaSampler, parse_rate, parse_state

from support.fixturetree import write


def test_rdma_value_parsers(tmp_path: Path) -> None:
    # Counter files: a port without a PMA says so in words, which is NULL, not an error.
    write(tmp_path, "no_pma", "N/A (no PMA)\n")
    write(tmp_path, "count", "123\n")
    assert read_int_fast(str(tmp_path / "no_pma")) is None
    assert read_int_fast(str(tmp_path / "count")) == 123
    assert parse_state("4: ACTIVE") == 4 and parse_state("garbage") is None
    assert parse_rate("100 Gb/sec (4X EDR)") == 12_500_000_000
    assert parse_rate("2.5 Gb/sec (1X SDR)") == 312_500_000


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
