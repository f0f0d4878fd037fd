"""disk: every /proc/diskstats layout the kernel has had, partitions and garbage skipped."""

from __future__ import annotations

import pytest

from ironsight.agent.samplers.disk import parse_diskstats


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
