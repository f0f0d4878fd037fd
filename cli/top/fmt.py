"""Numbers, bars and sparklines for `ironsight top`: narrow, fixed-width, readable without colour."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

SPARKS = "▁▂▃▄▅▆▇█"
SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "pre-warning": "cyan"}
SEVERITY_MARK = {"critical": "!!", "warning": "!", "pre-warning": "~"}


def num(v: float | None, spec: str = ".0f", suffix: str = "") -> str:
    return "-" if v is None else f"{v:{spec}}{suffix}"


def si(v: float | None, unit: str = "") -> str:
    """1234567 -> '1.2M': four characters or so, powers of 1000 (rates, as network people count)."""
    if v is None:
        return "-"
    for prefix in ("", "k", "M", "G", "T"):
        if abs(v) < 999.5:
            return f"{v:.0f}{prefix}{unit}" if abs(v) >= 9.95 or prefix == "" else f"{v:.1f}{prefix}{unit}"
        v /= 1000
    return f"{v:.0f}P{unit}"


def gib(v: float | None) -> str:
    return "-" if v is None else f"{v / 2**30:.0f}" if v >= 10 * 2**30 else f"{v / 2**30:.1f}"


def ratio(used: float | None, total: float | None) -> float | None:
    return None if used is None or not total else 100.0 * used / total


def bar(pct: float | None, width: int, style: str = "green") -> Text:
    """A bar of `width` cells filled to pct (eighths of a cell), the rest shaded."""
    if width <= 0:
        return Text()
    if pct is None:
        return Text("-".ljust(width), style="dim")
    eighths = round(max(0.0, min(100.0, pct)) / 100 * width * 8)
    full, part = divmod(eighths, 8)
    filled = "█" * full + ("" if part == 0 or full >= width else " ▏▎▍▌▋▊▉"[part])
    out = Text(filled, style=style)
    out.append("░" * (width - len(filled)), style="dim")
    return out


def sparkline(values: Sequence[float | None], width: int, top: float = 100.0) -> Text:
    """The last `width` values as block heights from 0 to top; a gap where there was no sample."""
    if width <= 0:
        return Text()
    shown = list(values)[-width:]
    cells = "".join(
        " " if v is None else SPARKS[min(len(SPARKS) - 1, max(0, int(v / top * (len(SPARKS) - 1) + 0.5)))]
        for v in shown
    )
    return Text(cells.rjust(width), style="cyan")


def ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s / size:.0f}{unit}"
    return f"{s:.0f}s"


Cell = Text | str


def grid(
    headers: Sequence[str],
    rows: Sequence[Sequence[Cell]],
    width: int,
    right: frozenset[int] = frozenset(),
    squeeze: Sequence[tuple[int, int]] = (),
) -> list[Text]:
    """Rows of cells as aligned lines no wider than width, header first: the columns `squeeze`
    names (index, narrowest) give up cells first, then every line is cut with an ellipsis. A
    fixed-width grid costs a tenth of what a rich Table does to measure and lay out, which
    matters at a refresh a second."""
    cells = [[c if isinstance(c, Text) else Text(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], c.cell_len)
    over = sum(widths) + len(widths) - 1 - width
    for i, narrowest in squeeze:
        if over <= 0:
            break
        give = min(over, max(0, widths[i] - narrowest))
        widths[i] -= give
        over -= give
    lines = []
    for row in [[Text(h, style="bold") for h in headers], *cells]:
        line = Text(no_wrap=True, overflow="ellipsis")
        for i, c in enumerate(row):
            if i:
                line.append(" ")
            c.truncate(widths[i], overflow="ellipsis")
            pad = " " * (widths[i] - c.cell_len)
            line.append_text(Text(pad) + c if i in right else c + Text(pad))
        line.truncate(width, overflow="ellipsis")
        line.rstrip()
        lines.append(line)
    return lines
