"""Mangled /proc and /sys files (hypothesis) on node_exporter's real fixture tree: no exception escapes
a sampler (a required file that is gone is its one reported failure, OSError), and the batch the agent
builds from what it read passes the collector's checks, so one broken file costs at most its own
values, never a batch of the other sources."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ironsight.agent.samplers import REGISTRY
from ironsight.agent.samplers.base import Paths, SamplerContext
from ironsight.core.columnar import TableBuilder
from ironsight.core.validate import check, check_values
from ironsight.v1 import telemetry_pb2 as pb

pytestmark = pytest.mark.slow

PATTERNS = [
    "proc/stat", "proc/loadavg", "proc/meminfo", "proc/diskstats", "proc/pressure/*", "proc/net/dev",
    "proc/net/snmp", "sys/class/infiniband/*/ports/*/counters/*", "sys/class/infiniband/*/ports/*/rate",
    "sys/class/infiniband/*/ports/*/state", "sys/class/hwmon/*/temp*_input", "sys/class/hwmon/*/name",
    "sys/class/thermal/thermal_zone*/temp", "sys/devices/system/cpu/cpu*/cpufreq/scaling_cur_freq",
    "sys/devices/system/node/node*/meminfo", "sys/class/net/*/speed", "sys/class/net/*/mtu",
]  # fmt: skip

TOKENS = st.one_of(
    st.sampled_from(["-1", "-9999999999999999999", "nan", "inf", "1e400", "0x10", "", "18446744073709551616",
                     "99999999999999999999999999", "1.5", ":", "\x00"]),
    st.text(max_size=12),
)  # fmt: skip


def mangle(original: bytes, how: str, data: st.DataObject) -> bytes | None:
    if how == "delete":
        return None
    if how == "bytes":
        return data.draw(st.binary(max_size=400))
    if how == "truncate":
        return original[: data.draw(st.integers(0, max(0, len(original) - 1)))]
    if how == "repeat":
        return original * 2
    words = original.decode(errors="replace").split(" ")
    i = data.draw(st.integers(0, max(0, len(words) - 1)))
    words[i] = data.draw(TOKENS)
    return " ".join(words).encode(errors="surrogateescape")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), how=st.sampled_from(["delete", "bytes", "truncate", "repeat", "token", "token"]))
def test_no_exception_escapes_a_sampler(node_exporter_tree: Path, data: st.DataObject, how: str) -> None:
    files = sorted({p for pattern in PATTERNS for p in node_exporter_tree.glob(pattern) if p.is_file()})
    assert len(files) > 30
    target = data.draw(st.sampled_from(files))
    original = target.read_bytes()
    try:
        mangled = mangle(original, how, data)
        if mangled is None:
            target.unlink()
        else:
            target.write_bytes(mangled)
        ctx = SamplerContext(paths=Paths(node_exporter_tree / "proc", node_exporter_tree / "sys"))
        batch = pb.Batch(node_id="fuzz", boot_id="b", seq=1, interval_s=1.0)
        for name, spec in REGISTRY.items():
            if name == "gpu":
                continue
            sampler = spec.factory(ctx)
            try:
                reading = sampler.sample()
            except OSError as exc:  # the runner reports it as this sampler's failure
                assert how == "delete" and "cannot read" in str(exc), exc
                continue
            finally:
                sampler.close()
            for table, rows in reading.tables.items():
                builder = TableBuilder(table)
                for device, values in rows:
                    for column, value in values.items():
                        assert value is None or isinstance(value, int | float), (table, column, value)
                    builder.add(10**18 * 17 // 10, device, values)  # 2023-11
                batch.tables.append(builder.to_proto())
        where = f"{target.relative_to(node_exporter_tree)} ({how})"
        if batch.tables:
            valid = check(batch, now_ns=10**18 * 17 // 10)
            check_values(valid.batch)  # raises InvalidBatch: the collector would refuse it all
        else:
            raise AssertionError(f"{where}: no sampler read anything")
    finally:
        target.write_bytes(original)
