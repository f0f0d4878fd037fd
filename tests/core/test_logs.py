"""Logging: one line per event, text or JSON, and a message repeated in a loop shown a few times and then
counted, not printed again and again."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import time
from pathlib import Path

import pytest

from ironsight.core.logs import JsonFormatter, RateLimit, TextFormatter

from support.processes import BIN


def logger(fmt: logging.Formatter, limit: RateLimit) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(fmt)
    handler.addFilter(limit)
    log = logging.getLogger(f"test.{id(out)}")
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.INFO)
    return log, out


def test_a_message_in_a_loop_is_shown_five_times_then_counted() -> None:
    log, out = logger(TextFormatter(), RateLimit(burst=5, window_s=0.3))
    for _ in range(100):
        log.warning("sampler %s failed: %s", "disk", "cannot read /proc/diskstats")
    for n in range(8):  # distinct events are all shown
        log.warning("finding opened id=%d", n)
    lines = out.getvalue().splitlines()
    assert len(lines) == 5 + 8 and lines[-1].endswith("finding opened id=7")
    time.sleep(0.35)
    log.warning("sampler %s failed: %s", "disk", "cannot read /proc/diskstats")
    last = out.getvalue().splitlines()[-1]
    assert "sampler disk failed" in last
    assert last.endswith("(and 95 more like it in the last minute, not shown)")


def test_json_lines() -> None:
    log, out = logger(JsonFormatter(), RateLimit())
    log.error("store failed: %s", "disk full")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("with a traceback")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["level"] == "error" and first["msg"] == "store failed: disk full"
    assert first["time"].endswith("+00:00") and "T" in first["time"]
    assert "ValueError: boom" in second["exception"]


@pytest.mark.slow
def test_the_agent_logs_json_when_asked(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [str(BIN / "ironsight-agent"), "--collector", "127.0.0.1:1", "--log-format", "json", "--no-collector.gpu",
         "--state-dir", str(tmp_path)],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(2)
    proc.terminate()
    _, err = proc.communicate(timeout=30)
    records = [json.loads(line) for line in err.splitlines()]
    assert any("unreachable" in r["msg"] and r["level"] == "warning" for r in records)
    assert sum("unreachable" in r["msg"] for r in records) == 1  # an outage is logged once, not per retry


def test_logfmt_lines() -> None:
    import shlex

    from ironsight.core.logs import LogfmtFormatter

    log, out = logger(LogfmtFormatter(), RateLimit())
    log.warning('finding opened id=%d kind=%s note="%s"', 7, "thermal", "hot")
    log.info("plain")
    first, second = out.getvalue().splitlines()
    fields = dict(part.split("=", 1) for part in shlex.split(first))
    assert fields["level"] == "warning" and fields["logger"].startswith("test.")
    assert fields["msg"] == 'finding opened id=7 kind=thermal note="hot"'
    assert second.endswith("msg=plain") and " level=info " in second
