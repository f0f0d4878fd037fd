"""Range-based precision and recall (Tatbul et al. 2018) and the eval command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ironsight.offline.evaluate import _score

from support.paths import CORPUS
from support.processes import run_cli


def test_flat_bias_overlap_and_cardinality() -> None:
    label = (100.0, 200.0)
    assert _score(label, [(100.0, 200.0)]) == 1.0
    assert _score(label, [(150.0, 250.0)]) == 0.5  # half of the label covered
    assert _score(label, [(300.0, 400.0)]) == 0.0
    # Covered fully but by two separate findings: cardinality factor 1/2.
    assert _score(label, [(100.0, 150.0), (150.0, 200.0)]) == 0.5
    # Precision of a finding twice as long as the label it hits: half of it is right.
    assert _score((100.0, 300.0), [label]) == 0.5


@pytest.mark.slow
def test_eval_on_the_corpus(tmp_path: Path) -> None:
    out = run_cli(
        "--format",
        "json",
        "eval",
        str(CORPUS / "mixed-2n2g.trace"),
        str(CORPUS / "xid-1n2g.trace"),
        str(CORPUS / "healthy-2n2g.trace"),
    )
    rows = {r["kind"]: r for r in json.loads(out.stdout)}
    assert set(rows) == {"data_starvation", "thermal", "network_jitter", "power_cap", "xid", "hardware_fault"}
    for kind, row in rows.items():
        assert row["labels"] >= 1 and row["findings"] >= 1, kind
        assert row["precision"] >= 0.9, row
        # The corpus is small and sampled every 2 s: its starvation label lasts 81 s
        # and the 30 s starvation window holds 15 samples, so latency is ~2.6 steps
        # and costs ~20 % of range-based recall. The targets (>= 0.95, <= 2 steps)
        # are measured on full-length 1 s scenarios by bench/run.py accuracy.
        starvation = kind == "data_starvation"
        assert row["median_latency_steps"] <= (3 if starvation else 2), row
        assert row["recall"] >= (0.75 if starvation else 0.9), row


@pytest.mark.slow
def test_findings_on_an_unlabelled_trace_count_against_precision(tmp_path: Path) -> None:
    # The mixed trace's faults, with its labels removed: every finding is a false positive.
    from ironsight.core.trace import TraceWriter, read_all

    header, batches = read_all(CORPUS / "mixed-2n2g.trace")
    del header.labels[:]
    unlabelled = tmp_path / "unlabelled.trace"
    with TraceWriter(unlabelled, header) as w:
        for b in batches:
            w.write(b)
    rows = json.loads(run_cli("--format", "json", "eval", str(unlabelled)).stdout)
    assert rows and all(r["precision"] == 0 and r["labels"] == 0 and r["recall"] is None for r in rows)


def test_eval_refuses_a_damaged_trace(tmp_path: Path) -> None:
    bad = tmp_path / "bad.trace"
    bad.write_bytes((CORPUS / "xid-1n2g.trace").read_bytes()[:-50])
    result = run_cli("eval", str(bad), check=False)
    assert result.returncode == 1 and "truncated" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("kind", ["thermal"])
def test_eval_help_names_the_method(kind: str) -> None:
    assert "Tatbul" in run_cli("eval", "--help").stdout
