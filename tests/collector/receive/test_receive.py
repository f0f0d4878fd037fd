"""The receiver's rules, through its WSGI app on a real store: parts of a row from different requests,
retries, refusals, units, XIDs, who may write for which node."""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cramjam
import pytest

from ironsight.collector.receive.decode import STALE_NAN
from ironsight.collector.receive.senders import SendersError, load

from support.receive import GPU, LATER, Rx, T, request


@pytest.fixture
def rx(tmp_path: Path) -> Iterator[Rx]:
    r = Rx(tmp_path)
    yield r
    r.staging.close()
    r.store.close()


def test_parts_of_a_row_from_separate_requests_settle_into_one_row(rx: Rx) -> None:
    assert rx.post(request(("DCGM_FI_DEV_GPU_UTIL", GPU, [(T, 97), (T + 15000, 40)]))) == (204, "")
    assert rx.post(
        request(
            ("DCGM_FI_DEV_SM_CLOCK", GPU, [(T, 1980)]),  # MHz
            ("DCGM_FI_DEV_FB_USED", GPU, [(T, 1024)]),  # MiB
            ("DCGM_FI_DEV_FB_FREE", GPU, [(T, 3072)]),
            ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", GPU, [(T, 5500)]),  # mJ
            ("DCGM_FI_DEV_POWER_VIOLATION", GPU, [(T, 2_500_000)]),
        )
    ) == (204, "")  # us; fmt: skip
    assert rx.staging.settle(LATER) == 2
    assert rx.rows("SELECT node, device, epoch_ms(time), util_gpu_percent, sm_clock_hertz, memory_used_bytes, "
                   "memory_total_bytes, energy_joules, throttle_sw_power_seconds FROM gpu ORDER BY time") == [
        ("gpu-1", "0", T, 97.0, 1.98e9, 2.0**30, 4 * 2.0**30, 5.5, 2.5),
        ("gpu-1", "0", T + 15000, 40.0, None, None, None, None, None),
    ]  # fmt: skip
    assert rx.rows("SELECT hostname, agent_version, interval_s FROM nodes") == [
        ("gpu-1.lab", "remote write (anonymous)", 15.0)]  # fmt: skip
    assert rx.rows("SELECT attrs['uuid'], attrs['model'] FROM devices") == [("GPU-1", "NVIDIA H200")]


def test_a_retry_stores_nothing_twice_and_a_late_part_completes_its_row(rx: Rx) -> None:
    body = request(("DCGM_FI_DEV_GPU_UTIL", GPU, [(T, 97)]))
    assert rx.post(body)[0] == 204 and rx.post(body)[0] == 204  # retried before settling
    rx.staging.settle(LATER)
    assert rx.post(body)[0] == 204  # and after
    assert rx.post(request(("DCGM_FI_DEV_GPU_TEMP", GPU, [(T, 71)])))[0] == 204  # late
    rx.staging.settle(LATER)
    assert rx.rows("SELECT util_gpu_percent, temperature_celsius FROM gpu") == [(97.0, 71.0)]
    assert rx.rows("SELECT count(*) FROM received") == [(0,)]


def test_xid_rows_when_dcgm_exporters_last_xid_changes(rx: Rx) -> None:
    values = [0, 0, 43, 43, 79, 79, 0, 79]
    rx.post(request(("DCGM_FI_DEV_XID_ERRORS", GPU, [(T + 1000 * i, v) for i, v in enumerate(values)])))
    rx.staging.settle(LATER)
    rx.post(request(("DCGM_FI_DEV_XID_ERRORS", GPU, [(T + 9000, 79), (T + 10000, 13)])))  # next settle
    rx.staging.settle(LATER)
    # A change to a non-zero value is an XID; the same XID again after a 0 is a new one.
    assert rx.rows(f"SELECT epoch_ms(time) - {T}, xid FROM gpu_xid ORDER BY time") == [
        (2000, 43), (4000, 79), (7000, 79), (10000, 13)]  # fmt: skip


def test_unknown_series_are_counted_stale_markers_skipped_bad_ones_refused_and_kept_and_the_rest_stored(
    rx: Rx, caplog: pytest.LogCaptureFixture
) -> None:
    (stale,) = struct.unpack("<d", STALE_NAN.to_bytes(8, "little"))
    status, text = rx.post(request(
        ("node_load1", {"instance": "cpu-1:9100"}, [(T, 0.5), (T + 1000, stale)]),
        ("node_textfile_scrape_error", {"instance": "cpu-1:9100"}, [(T, 0)]),
        ("go_gc_duration_seconds_count", {"instance": "cpu-1:9100"}, [(T, 3), (T + 1000, 4)]),
        ("node_load5", {}, [(T, 1.0)]),
        ("node_load15", {"instance": "cpu-1:9100"}, [(T, float("inf"))]),
        ("node_cpu_seconds_total", {"instance": "cpu-1:9100", "mode": "idle"}, [(T, 9.0)]),
    ))  # fmt: skip
    assert status == 400
    assert text.splitlines() == [
        "stored 1 samples; refused 3 series (their samples kept in received_refused):",
        "node_load5{}: no instance label to name its node",
        'node_cpu_seconds_total{instance="cpu-1:9100",mode="idle"}: cpu series without the labels that name its '
        "device",
        "cpu-1 load.load15 '': a value that is not finite",
    ]
    rx.staging.settle(LATER)
    assert rx.rows("SELECT node, load1, load15 FROM load") == [("cpu-1", 0.5, None)]
    # A 400 is not retried: what was refused is kept, with why, and the log says so once.
    at = datetime(1970, 1, 1) + timedelta(milliseconds=T)
    assert rx.rows("SELECT sender, reason, series, time, value FROM received_refused ORDER BY series") == [
        ("anonymous", "a value that is not finite", "cpu-1 load.load15 ''", at, float("inf")),
        ("anonymous", "cpu series without the labels that name its device",
         'node_cpu_seconds_total{instance="cpu-1:9100",mode="idle"}', at, 9.0),
        ("anonymous", "no instance label to name its node", "node_load5{}", at, 1.0),
    ]  # fmt: skip
    said = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert said == [
        "remote write from anonymous: refused 3 series since the last such line, e.g. node_load5{}: no instance "
        "label to name its node; their samples are kept in received_refused"
    ]
    assert rx.post(request(("node_load5", {}, [(T + 1000, 2.0)])))[0] == 400
    assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 1  # not again within a minute
    assert rx.rows("SELECT count(*) FROM received_refused") == [(4,)]
    s = rx.app.stats["anonymous"]
    assert (s.samples, s.stored, s.refused, dict(s.dropped)) == (
        9,
        1,
        4,
        {"node_textfile_scrape_error": 1, "go_gc_duration_seconds": 2},
    )


def test_requests_that_cannot_be_read(rx: Rx) -> None:
    assert rx.post(b"not snappy at all")[0] == 400
    assert rx.post(bytes(cramjam.snappy.compress_raw(b"\xff\xff\xff")))[0] == 400
    body = request(("node_load1", {"instance": "a"}, [(T, 1)]))
    assert rx.post(body, CONTENT_TYPE="application/x-protobuf;proto=io.prometheus.write.v2.Request")[0] == 415
    assert rx.post(body, HTTP_CONTENT_ENCODING="gzip")[0] == 415
    assert rx.post(body, REQUEST_METHOD="GET")[0] == 405
    assert rx.post(body, PATH_INFO="/api/v1/push")[0] == 404
    assert rx.rows("SELECT count(*) FROM received") == [(0,)]


def test_each_sender_writes_only_for_its_instances(tmp_path: Path) -> None:
    token, pw = tmp_path / "t", tmp_path / "p"
    token.write_text("s3cret-token\n")
    pw.write_text("hunter2")
    (tmp_path / "senders.toml").write_text(f"""
[[sender]]
name = "prom-eu"
token_file = "{token}"
instances = "eu-.*"

[[sender]]
name = "vmagent"
username = "vm"
password_file = "{pw}"
instances = "lab-1"

[[sender]]
name = "prom-tls"
certificate = "prom-tls"
instances = ".*"
""")
    r = Rx(tmp_path, load(tmp_path / "senders.toml"))
    body = request(("node_load1", {"instance": "eu-1:9100"}, [(T, 1)]),
                   ("node_load1", {"instance": "lab-1:9100"}, [(T, 2)]))  # fmt: skip
    basic = base64.b64encode(b"vm:hunter2").decode()
    assert r.post(body)[0] == 401
    assert r.post(body, HTTP_AUTHORIZATION="Bearer wrong")[0] == 401
    status, text = r.post(body, HTTP_AUTHORIZATION="Bearer s3cret-token")
    assert (
        status == 400 and "may not write for instance 'lab-1'" in text and text.startswith("stored 1 samples")
    )
    status, text = r.post(body, HTTP_AUTHORIZATION=f"Basic {basic}")
    assert status == 400 and "may not write for instance 'eu-1'" in text
    assert r.post(body, **{"ironsight.peer_names": {"prom-tls"}}) == (204, "")
    r.staging.settle(LATER)
    assert r.rows("SELECT node, load1 FROM load ORDER BY 1") == [("eu-1", 1.0), ("lab-1", 2.0)]
    assert {k: dict(v.requests) for k, v in r.app.stats.items()} == {
        "unknown": {401: 2}, "prom-eu": {400: 1}, "vmagent": {400: 1}, "prom-tls": {204: 1}}  # fmt: skip
    assert r.rows("SELECT sender, series, value FROM received_refused ORDER BY sender") == [
        ("prom-eu", 'node_load1{instance="lab-1:9100"}', 2.0),
        ("vmagent", 'node_load1{instance="eu-1:9100"}', 1.0),
    ]
    r.staging.close()
    r.store.close()


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[[sender]]\nname = 'a'\ninstances = '.*'\n", "give exactly one of"),
        ("[[sender]]\nname = 'a'\ninstances = '('\ncertificate = 'a'\n", "not a regular expression"),
        ("[[sender]]\nname = 'a'\ninstances = '.*'\ntoken_file = '/nonexistent'\n", "No such file"),
        ("[[sender]]\nname = 'a'\ninstances = '.*'\ncertificate = 'a'\ncolour = 1\n", "unknown keys ['colour']"),
        ("sender = 1\n", "want one or more [[sender]] tables"),
        ("[[sender\n", "not TOML"),
        ("[[sender]]\nname = 'a'\ninstances = '.*'\ncertificate = 'a'\n[[sender]]\nname = 'a'\ninstances = "
         "'.*'\ncertificate = 'b'\n", "two senders share a name"),
    ],
)  # fmt: skip
def test_a_broken_senders_file_is_one_clear_line(tmp_path: Path, text: str, error: str) -> None:
    (tmp_path / "s.toml").write_text(text)
    with pytest.raises(SendersError) as exc:
        load(tmp_path / "s.toml")
    assert error in str(exc.value) and "\n" not in str(exc.value)


def test_settling_waits_for_parts_still_arriving(rx: Rx) -> None:
    rx.post(request(("DCGM_FI_DEV_GPU_UTIL", GPU, [(T, 97)])))
    assert rx.staging.settle(datetime.now() - timedelta(hours=1)) == 0  # its part came after the cutoff
    assert rx.rows("SELECT count(*) FROM gpu") == [(0,)]
    assert rx.staging.settle(LATER) == 1


def test_a_failing_or_lagging_store_answers_503_so_the_sender_retries(
    rx: Rx, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = request(("node_load1", {"instance": "a"}, [(T, 1)]))

    def full(rows: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rx.staging, "_insert", full)
    status, text = rx.post(body)
    assert (status, text) == (503, "not stored: [Errno 28] No space left on device\n")
    monkeypatch.undo()
    rx.staging.backlog = 10**9  # far behind settling
    assert rx.post(body)[0] == 503
    rx.staging.backlog = 0
    assert rx.post(body)[0] == 204  # the retry
    rx.staging.settle(LATER)
    assert rx.rows("SELECT node, load1 FROM load") == [("a", 1.0)]


def test_arrival_times_are_utc_whatever_the_hosts_time_zone(tmp_path: Path) -> None:
    """A collector in UTC+9 must not hold samples nine hours before settling them (nor one in UTC-5 settle
    them at once): arrival and the settle cutoff are both UTC."""
    import os
    import time as clock

    old = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Tokyo"
    clock.tzset()
    try:
        r = Rx(tmp_path)
        assert r.post(request(("node_load1", {"instance": "a"}, [(T, 1)])))[0] == 204
        r.staging.settle(datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=5))
        assert r.rows("SELECT node FROM load") == [("a",)]
        r.staging.close()
        r.store.close()
    finally:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        clock.tzset()


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--remote-write-senders", "s.toml"], "--remote-write-senders needs --remote-write-listen"),
        (["--remote-write-listen", "127.0.0.1:9471", "--remote-write-settle", "0"], "must be 1 to 600 seconds"),
        (["--remote-write-listen", "127.0.0.1:9471", "--remote-write-node-label", "a-b"], "is not a label name"),
        (["--remote-write-listen", "0.0.0.0:9471"], "would be open to the network"),
        (["--remote-write-listen", "127.0.0.1:9471", "--remote-write-senders", "/nonexistent.toml"],
         "/nonexistent.toml: No such file or directory"),
        (["--remote-write-listen", "127.0.0.1:9471", "--tls-ca", "ca.pem", "--tls-cert", "c.pem", "--tls-key",
          "c.key"], "with TLS needs --remote-write-senders"),
    ],
)  # fmt: skip
def test_receiver_flags_that_do_not_hold_are_one_line(
    argv: list[str],
    error: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ironsight.collector.main import load

    monkeypatch.chdir(tmp_path)
    for name in ("ca.pem", "c.pem", "c.key"):
        (tmp_path / name).write_text("x")
    with pytest.raises(SystemExit) as exc:
        load(["--insecure", *argv] if "--tls-ca" not in argv else argv)
    assert exc.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert error in last, last


@pytest.mark.parametrize(("steps_ms", "interval"), [
    ([994, 1003, 991], 1.0),  # a loaded scraper at 1 s: 0.99 to 10 ms, within 2 % of 1 s
    ([14_800, 15_000, 15_100], 15.0),
    ([333, 333, 334], 0.33),  # not a usual interval: to 10 ms
    ([1_100, 1_100, 1_100], 1.1),  # 10 % off 1 s is an interval of its own
])  # fmt: skip
def test_a_node_interval_is_its_median_step_as_configured(
    rx: Rx, steps_ms: list[int], interval: float
) -> None:
    times = [T + sum(steps_ms[:i]) for i in range(len(steps_ms) + 1)]
    assert rx.post(request(("DCGM_FI_DEV_GPU_UTIL", GPU, [(t, 50) for t in times])))[0] == 204
    rx.staging.settle(LATER)
    assert rx.rows("SELECT interval_s FROM nodes") == [(interval,)]
