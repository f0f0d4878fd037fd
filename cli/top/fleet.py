"""The fleet view of `ironsight top`: a line per node, worst first, a page at a time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rich.console import Group, RenderableType
from rich.text import Text

from ironsight.cli.top.fmt import SEVERITY_MARK, SEVERITY_STYLE, ago, bar, grid, num, ratio, si
from ironsight.cli.top.model import Finding, Row, Snapshot
from ironsight.core.clock_reasons import COSTLY

CHROME_LINES = 3  # the title, the table's header and the footer


@dataclass
class View:
    """Where the user is: the selected row, the node filter, the job, and the screen's size."""

    width: int = 80
    height: int | None = None  # None: every row (text output)
    cursor: int = 0
    pattern: str = ""
    job: str | None = None  # --job: asked of the store
    source: str = ""
    by_job: bool = False  # a line per job instead of per node
    within: str | None = None  # the nodes of this job only (chosen in the job lines)

    def page_rows(self) -> int | None:
        return None if self.height is None else max(1, self.height - CHROME_LINES)


def markers(found: list[Finding], width: int = 18) -> Text:
    """The node's worst open finding as '!! thermal', then '+N' for the rest."""
    if not found:
        return Text("")
    worst = found[0]
    out = Text(
        f"{SEVERITY_MARK.get(worst.severity, '~')} {worst.short}",
        style=SEVERITY_STYLE.get(worst.severity, ""),
    )
    if len(found) > 1:
        out.append(f" +{len(found) - 1}", style="bold")
    out.truncate(width, overflow="ellipsis")
    return out


def title(snap: Snapshot, view: View, now: datetime) -> Text:
    gpus = sum(n.get("gpus") or 0 for n in snap.nodes)
    utils = [n["util_pct"] * n["gpus"] for n in snap.nodes if n.get("util_pct") is not None and n.get("gpus")]
    power = sum(n.get("power_w") or 0.0 for n in snap.nodes)
    crit = sum(f.severity == "critical" for f in snap.findings)
    out = Text("ironsight top", style="bold")
    if view.job or view.within:  # first: at 80 columns the title is cut short
        out.append(f"  job {view.job or view.within}", style="bold")
    out.append(
        f"  {len(snap.nodes)} node{'s' if len(snap.nodes) != 1 else ''}  {gpus} GPU{'s' if gpus != 1 else ''}"
    )
    if utils:
        out.append(f"  util {sum(utils) / max(1, gpus):.0f}%  {si(power, 'W')}")
    if snap.findings:
        out.append(f"  {len(snap.findings)} open findings", style="bold red" if crit else "yellow")
        if crit:
            out.append(f" ({crit} critical)", style="bold red")
    else:
        out.append("  no open findings", style="green")
    if snap.ref is not None:
        lag = (now - snap.ref).total_seconds()
        out.append(
            f"  data {snap.ref:%H:%M:%S} UTC" + (f" ({ago(lag)} ago)" if lag > 30 else ""), style="dim"
        )
    if view.source:
        out.append(f"  {view.source}", style="dim")
    out.no_wrap = True
    out.overflow = "ellipsis"
    return out


def _columns(width: int) -> list[str]:
    cols = ["node", "findings", "util", "power", "hot", "gmem", "cpu", "mem", "io", "net"]
    if width >= 110:
        cols.insert(2, "gpus")
        cols.append("seen")
    if width >= 150:
        cols.append("jobs")
    return cols


def _cells(snap: Snapshot, n: Row, cols: list[str], width: int, now: datetime) -> list[Text | str]:
    wide = width >= 110
    util = n.get("util_pct")
    hot, slow = n.get("temp_c"), n.get("slowdown_c")
    hot_style = (
        "bold red"
        if hot is not None and slow and hot >= slow
        else "yellow"
        if hot and slow and hot >= slow - 5
        else ""
    )
    power, limit = n.get("power_w"), n.get("power_limit_w")
    capped = n.get("reasons") is not None and n["reasons"] & COSTLY
    stale = snap.stale_s(n)
    cell: dict[str, Text | str] = {
        "node": Text(n["node"], style="bold red" if stale else ""),
        "findings": markers(snap.by_node.get(n["node"], []))
        or (Text(f"quiet {ago(stale)}", style="red") if stale else Text("")),
        "gpus": num(n.get("gpus"), "d"),
        "util": (bar(util, 8).append(f" {num(util, '3.0f')}%") if wide else Text(f"{num(util)}%"))
        if n.get("gpus")
        else Text("-", style="dim"),
        "power": Text(
            f"{si(power)}/{si(limit, 'W')}" if wide else si(power, "W"), style="yellow" if capped else ""
        ),
        "hot": Text(num(hot, ".0f", "C"), style=hot_style),
        "gmem": num(ratio(n.get("gpu_mem_used_bytes"), n.get("gpu_mem_total_bytes")), ".0f", "%"),
        "cpu": num(n.get("cpu_pct"), ".0f", "%"),
        "mem": num(ratio(n.get("mem_used_bytes"), n.get("mem_total_bytes")), ".0f", "%"),
        "io": si(n.get("disk_bps"), "B/s"),
        "net": f"{si(n.get('net_rx_bps'))}/{si(n.get('net_tx_bps'), 'B/s')}"
        if wide
        else si((n.get("net_rx_bps") or 0) + (n.get("net_tx_bps") or 0), "B/s"),
        "seen": ago((now - n["last_seen"]).total_seconds()) if n.get("last_seen") else "-",
        "jobs": ",".join(n.get("jobs") or []) or "-",
    }
    return [cell[c] for c in cols]


HEADERS = {"util": "GPU util", "gmem": "GPU mem", "cpu": "CPU", "mem": "RAM", "net": "net rx/tx"}


def fleet_table(snap: Snapshot, view: View, rows: list[Row], first: int, now: datetime) -> Group:
    cols = _columns(view.width)
    headers = [("net" if view.width < 110 else HEADERS[c]) if c == "net" else HEADERS.get(c, c) for c in cols]
    body = [_cells(snap, n, cols, view.width, now) for n in rows]
    right = frozenset(i for i, c in enumerate(cols) if c not in ("node", "findings", "jobs", "util"))
    squeeze = [
        (cols.index(c), narrowest)
        for c, narrowest in (("jobs", 6), ("node", 8), ("findings", 10))
        if c in cols
    ]
    return Group(*cursor_grid(view, first, headers, body, right, squeeze))


def cursor_grid(
    view: View,
    first: int,
    headers: list[str],
    body: list[list[Text | str]],
    right: frozenset[int],
    squeeze: list[tuple[int, int]],
) -> list[Text]:
    """grid() of a page whose first line is number `first`; on a screen, with the cursor as a column
    of its own (visible without colour too) and its line reversed."""
    if view.height is None:
        return grid(headers, body, view.width, right, squeeze)
    lines = grid(
        ["", *headers],
        [[">" if i == view.cursor else " ", *cells] for i, cells in enumerate(body, start=first)],
        view.width,
        frozenset(i + 1 for i in right),
        [(i + 1, narrowest) for i, narrowest in squeeze],
    )
    lines[1 + view.cursor - first].stylize("reverse")
    return lines


def page(view: View, total: int) -> tuple[int, int]:
    """The first line of the page holding the cursor (kept within total) and the lines a page holds."""
    per = view.page_rows() or max(1, total)
    view.cursor = max(0, min(view.cursor, total - 1))
    return view.cursor // per * per, per


def fleet_view(snap: Snapshot, view: View, now: datetime) -> RenderableType:
    """The title, a page of nodes (or jobs) worst first (the one holding the cursor), and a footer."""
    if view.by_job:
        return job_view(snap, view, now)
    ordered = snap.attention(view.pattern, view.within)
    first, per = page(view, len(ordered))
    shown = ordered[first : first + per]
    parts: list[RenderableType] = [title(snap, view, now)]
    if not snap.nodes and view.job:
        parts.append(Text(f"no GPU holds job {view.job} now (see: ironsight jobs)", style="yellow"))
    elif not snap.nodes:
        parts.append(
            Text("no nodes yet: start an agent (ironsight-agent --collector HOST:PORT)", style="yellow")
        )
    elif not ordered:
        parts.append(Text(f"no node matches {view.pattern!r}", style="yellow"))
    else:
        parts.append(fleet_table(snap, view, shown, first, now))
    parts.append(footer(view, first, len(shown), len(ordered), len(snap.nodes), per))
    return Group(*parts)


def footer(view: View, first: int, shown: int, matching: int, total: int, per: int) -> Text:
    pages = max(1, -(-matching // per))
    out = Text(f"nodes {first + 1 if shown else 0}-{first + shown} of {matching}", style="bold")
    if matching != total:
        out.append(f" (filter {view.pattern!r}, {total} in all)")
    if pages > 1:
        out.append(f"  page {first // per + 1}/{pages}")
    if view.height is not None:
        back = "  Esc: jobs" if view.within else ""
        out.append(
            f"  up/down PgUp/PgDn  Enter: node  /: filter  g: jobs{back}  e: explain  q: quit", style="dim"
        )
    out.no_wrap = True
    out.overflow = "ellipsis"
    return out


def job_view(snap: Snapshot, view: View, now: datetime) -> RenderableType:
    """A line per job holding GPUs now, worst first: its nodes, GPUs, their utilization, power, hottest."""
    ordered = snap.job_attention()
    first, per = page(view, len(ordered))
    body: list[list[Text | str]] = [
        [
            j["job"],
            markers(snap.by_job.get(j["job"], [])),
            str(j["nodes"]),
            str(j["gpus"]),
            f"{num(j.get('util_pct'))}%",
            si(j.get("power_w"), "W"),
            num(j.get("temp_c"), ".0f", "C"),
        ]
        for j in ordered[first : first + per]
    ]
    headers = ["job", "findings", "nodes", "gpus", "GPU util", "power", "hot"]
    parts: list[RenderableType] = [title(snap, view, now)]
    if ordered:
        parts.extend(cursor_grid(view, first, headers, body, frozenset({2, 3, 4, 5, 6}), [(0, 8), (1, 10)]))
    else:
        parts.append(Text("no GPU is in a known job now (see: ironsight jobs)", style="yellow"))
    out = Text(f"jobs {first + 1 if body else 0}-{first + len(body)} of {len(ordered)}", style="bold")
    if view.height is not None:
        out.append("  up/down  Enter: its nodes  g: nodes  q: quit", style="dim")
    out.no_wrap, out.overflow = True, "ellipsis"
    parts.append(out)
    return Group(*parts)
