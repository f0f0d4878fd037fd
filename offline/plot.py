"""A small terminal line plot: a few series over a shared time axis, with marked instants.

Plain text (no colours needed), so it reads the same in a terminal, a log and a test.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

MARKS = "*o+x#@"


@dataclass
class Series:
    label: str
    x: Sequence[float]  # seconds relative to the plot's zero
    y: Sequence[float | None]


def _fmt(v: float) -> str:
    a = abs(v)
    if a >= 1e9:
        return f"{v / 1e9:.3g}G"
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e4:
        return f"{v / 1e3:.3g}k"
    return f"{v:.3g}"


def render(
    title: str,
    series: list[Series],
    marks: Sequence[tuple[float, str]] = (),
    width: int = 72,
    height: int = 12,
) -> str:
    """The series drawn on a width x height grid; marks are vertical lines at x (e.g. a finding's start)."""
    points = [
        (s_i, x, y)
        for s_i, s in enumerate(series)
        for x, y in zip(s.x, s.y, strict=True)
        if y is not None and math.isfinite(y)
    ]
    if not points:
        return f"{title}\n  (no samples in this range)\n"
    xs = [p[1] for p in points] + [m[0] for m in marks]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(p[2] for p in points), max(p[2] for p in points)
    if y1 - y0 < 1e-9:
        y0, y1 = y0 - 1, y1 + 1
    if x1 - x0 < 1e-9:
        x1 = x0 + 1
    grid = [[" "] * width for _ in range(height)]

    def col(x: float) -> int:
        return min(width - 1, max(0, round((x - x0) / (x1 - x0) * (width - 1))))

    def row(y: float) -> int:
        return min(height - 1, max(0, round((y1 - y) / (y1 - y0) * (height - 1))))

    for x, _ in marks:
        for r in range(height):
            grid[r][col(x)] = "|"
    for s_i, x, y in points:
        grid[row(y)][col(x)] = MARKS[s_i % len(MARKS)]
    labels = {0: _fmt(y1), height // 2: _fmt((y0 + y1) / 2), height - 1: _fmt(y0)}
    pad = max(len(v) for v in labels.values())
    lines = [title]
    for r in range(height):
        lines.append(f"{labels.get(r, ''):>{pad}} |{''.join(grid[r])}")
    lines.append(" " * pad + " +" + "-" * width)
    left, right = f"{x0:+.0f}s", f"{x1:+.0f}s"
    lines.append(" " * (pad + 2) + left + " " * max(1, width - len(left) - len(right)) + right)
    legend = "   ".join(f"{MARKS[i % len(MARKS)]} {s.label}" for i, s in enumerate(series))
    if marks:
        legend += "   | " + ", ".join(f"{name} ({x:+.0f}s)" for x, name in marks)
    lines.append(" " * (pad + 2) + legend)
    return "\n".join(lines) + "\n"
