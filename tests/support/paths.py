"""Where things are, for tests wherever they sit in the tree."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout
TESTS = ROOT / "tests"
CORPUS = TESTS / "traces"  # the committed trace corpus
SUPPORT = TESTS / "support"
