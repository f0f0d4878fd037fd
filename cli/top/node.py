"""The node view of `ironsight top`: its GPUs with bars and history, its findings, processes and host."""

from __future__ import annotations

from datetime import datetime

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ironsight.cli.top.fleet import View, markers
from ironsight.cli.top.fmt import SEVERITY_MARK, SEVERITY_STYLE, ago, bar, gib, num, ratio, si, sparkline
from ironsight.cli.top.model import Finding, Row, Snapshot
from ironsight.cli.top.query import HISTORY_POINTS, HISTORY_S
from ironsight.core.clock_reasons import decode


def reasons_text(mask: int | None) -> Text:
    """Clock event reasons in words, those that cost performance in colour (HW ones red)."""
    words = decode(mask)
    if not words:
        return Text("-" if mask is None else "none", style="dim")
    out = Text()
    for i, (word, costly) in enumerate(words):
        if i:
            out.append(", ")
        out.append(
            word,
            style=("bold red" if word.startswith("HW") or word == "power brake" else "yellow")
            if costly
            else "",
        )
    return out


def history(g: Row) -> list[float | None]:
    """The GPU's utilization buckets oldest first, None where no sample fell (the session lines them up)."""
    return list(g.get("history") or [])


def _gpu_cells(g: Row, found: list[Finding], wide: bool, spark: int) -> list[Text | str]:
    util = g.get("util_pct")
    mem = ratio(g.get("mem_used_bytes"), g.get("mem_total_bytes"))
    temp, slow = g.get("temp_c"), g.get("slowdown_c")
    power, limit = g.get("power_w"), g.get("power_limit_w")
    sm, sm_max = g.get("sm_mhz"), g.get("sm_max_mhz")
    temp_style = (
        "bold red"
        if temp and slow and temp >= slow
        else "yellow"
        if temp and slow and temp >= slow - 5
        else ""
    )
    power_style = "yellow" if power and limit and power >= 0.95 * limit else ""
    clock_style = "yellow" if sm is not None and sm_max and util and sm < 0.8 * sm_max else ""
    if not wide:  # 80 columns: figures without their ceilings, which the wide layout adds
        return [
            str(g["gpu"]),
            bar(util, 5).append(f"{num(util, '4.0f')}%"),
            sparkline(history(g), spark),
            Text(f"{num(mem, '.0f')}%"),
            Text(f"{num(power)}W", style=power_style),
            Text(f"{num(temp)}C", style=temp_style),
            Text(num(sm), style=clock_style),
            Text(
                " ".join(SEVERITY_MARK.get(f.severity, "~") for f in found[:1]),
                style=SEVERITY_STYLE.get(found[0].severity, "") if found else "",
            ),
            reasons_text(g.get("reasons")),
        ]
    return [
        str(g["gpu"]),
        g.get("job") or "-",
        bar(util, 10).append(f"{num(util, '4.0f')}%"),
        sparkline(history(g), spark),
        bar(mem, 6, "magenta").append(f" {gib(g.get('mem_used_bytes'))}/{gib(g.get('mem_total_bytes'))}G"),
        Text(f"{num(power)}/{num(limit)}W", style=power_style),
        Text(f"{num(temp)}/{num(slow)}C", style=temp_style),
        Text(f"{num(sm)}/{num(sm_max)}", style=clock_style),
        reasons_text(g.get("reasons")),
        markers(found, 24),
    ]


NARROW = (
    ("GPU", "right"),
    ("util", "left"),
    ("", "left"),
    ("mem", "right"),
    ("power", "right"),
    ("temp", "right"),
    ("SM MHz", "right"),
    ("", "left"),
    ("clock reasons", "left"),
)
WIDE = (
    ("GPU", "right"),
    ("job", "left"),
    ("util", "left"),
    ("", "left"),
    ("memory", "left"),
    ("power", "right"),
    ("temp/slow", "right"),
    ("SM MHz/max", "right"),
    ("clock reasons", "left"),
    ("findings", "left"),
)


def gpu_table(snap: Snapshot, node: str, width: int) -> Table:
    wide = width >= 120
    spark = 48 if width >= 200 else 30 if width >= 160 else 12
    t = Table(box=None, padding=(0, 1, 0, 0), show_edge=False, header_style="bold")
    for name, justify in WIDE if wide else NARROW:
        name = name or (
            "last " + ago(spark * HISTORY_S / HISTORY_POINTS)
            if t.columns and t.columns[-1].header == "util"
            else ""
        )
        t.add_column(name, justify=justify, no_wrap=True, overflow="ellipsis")  # type: ignore[arg-type]
    found = snap.by_node.get(node, [])
    for g in (snap.detail or {}).get("gpus") or []:
        t.add_row(*_gpu_cells(g, [f for f in found if f.device == g["gpu"]], wide, spark))
    return t


def finding_lines(
    found: list[Finding], cursor: int, now: datetime, ref: datetime | None, gpus: set[str]
) -> list[Text]:
    lines = []
    for i, f in enumerate(found):
        since = ((ref or now) - f.start_time).total_seconds()
        line = Text(">" if i == cursor else " ")
        line.append(
            f" #{f.id} {SEVERITY_MARK.get(f.severity, '~')} {f.kind} ({f.severity})",
            style=SEVERITY_STYLE.get(f.severity, ""),
        )
        line.append(f" {where(f.device, gpus)}, open {ago(since)} since {f.start_time:%H:%M:%S}")
        if f.cause:
            line.append(f", cause {f.cause}")
        if f.job:
            line.append(f", job {f.job}")
        line.no_wrap, line.overflow = True, "ellipsis"
        lines.append(line)
    return lines


def where(device: str, gpus: set[str]) -> str:
    return "node-wide" if not device else f"on GPU {device}" if device in gpus else f"on {device}"


def process_table(rows: list[Row], limit: int) -> Table:
    t = Table(box=None, padding=(0, 1, 0, 0), show_edge=False, header_style="bold", title_justify="left")
    for name, justify in (
        ("GPU", "right"),
        ("PID", "right"),
        ("process", "left"),
        ("job", "left"),
        ("GPU mem", "right"),
        ("SM", "right"),
    ):
        t.add_column(name, justify=justify, no_wrap=True, overflow="ellipsis")  # type: ignore[arg-type]
    for p in rows[:limit]:
        t.add_row(
            str(p["gpu"]),
            str(p["pid"]),
            p.get("name") or "?",
            p.get("job") or "-",
            f"{gib(p.get('used_memory_bytes'))}G",
            num(p.get("sm_util_percent"), ".0f", "%"),
        )
    return t


def host_lines(n: Row | None, detail: Row) -> list[Text]:
    n = n or {}
    psi = detail.get("psi") or {}
    host = Text("host ", style="bold")
    host.append(
        f"CPU {num(n.get('cpu_pct'))}% of {num(n.get('cores'), 'd')} cores  load {num(n.get('load1'), '.1f')}"
        f"  RAM {gib(n.get('mem_used_bytes'))}/{gib(n.get('mem_total_bytes'))}G"
    )
    host.append("  PSI some:")
    for label, key in (("cpu", "psi_cpu_pct"), ("io", "psi_io_pct"), ("mem", "psi_mem_pct")):
        v = psi.get(key)
        host.append(f" {label} {num(v, '.1f')}%", style="yellow" if v and v >= 10 else "")
    lines = [host]
    for d in detail.get("disks") or []:
        lines.append(
            Text(
                f"disk {d['device']}  read {si(d['read_bps'], 'B/s')}  write {si(d['write_bps'], 'B/s')}"
                f"  busy {num(None if d['busy'] is None else 100 * d['busy'])}%"
            )
        )
    for x in detail.get("nics") or []:
        state = "" if x.get("up") is None else " up" if x["up"] else " DOWN"
        speed = f" {si(8 * x['speed_bps'], 'b/s')}" if x.get("speed_bps") else ""
        lines.append(
            Text(
                f"nic {x['device']}{state}{speed}  rx {si(x['rx_bps'], 'B/s')}  tx {si(x['tx_bps'], 'B/s')}",
                style="red" if x.get("up") == 0 else "",
            )
        )
    for r in detail.get("rdma") or []:
        lines.append(Text(f"rdma {r['device']}  rx {si(r['rx_bps'], 'B/s')}  tx {si(r['tx_bps'], 'B/s')}"))
    for line in lines:
        line.no_wrap, line.overflow = True, "ellipsis"
    return lines


def node_view(snap: Snapshot, node: str, view: View, now: datetime) -> RenderableType:
    """One node: a title, its GPUs, its open findings (cursor on one), host lines, then processes."""
    n = snap.node(node)
    detail = snap.detail or {}
    found = snap.by_node.get(node, [])
    view.cursor = max(0, min(view.cursor, len(found) - 1))
    head = Text(f"node {node}", style="bold")
    if n is None:
        head.append("  not in the store (yet)", style="yellow")
    else:
        if n.get("hostname") and n["hostname"] != node:
            head.append(f" ({n['hostname']})")
        head.append(f"  every {num(n.get('interval_s'), 'g')} s")
        if n.get("jobs"):
            head.append(f"  job {','.join(n['jobs'])}")
        stale = snap.stale_s(n)
        if stale:
            head.append(f"  quiet for {ago(stale)}", style="bold red")
    head.append(
        "  Esc: fleet  up/down: finding  e: explain  q: quit" if view.height is not None else "", style="dim"
    )
    head.no_wrap, head.overflow = True, "ellipsis"
    parts: list[RenderableType] = [head]
    if n is None:
        return head
    if snap.asked != node:  # the fleet's (or another node's) snapshot, until this node's arrives
        parts.append(Text("asking the store for this node...", style="dim"))
        return Group(*parts)
    if detail.get("gpus"):
        parts.append(gpu_table(snap, node, view.width))
    else:
        parts.append(
            Text("no GPU samples in the window (no NVML on this node, or it went quiet)", style="dim")
        )
    if found:
        parts.append(Text("open findings", style="bold"))
        gpus = {str(g["gpu"]) for g in detail.get("gpus") or []}
        parts.extend(
            finding_lines(found, view.cursor if view.height is not None else -1, now, snap.ref, gpus)
        )
    parts.extend(host_lines(n, detail))
    procs = detail.get("processes") or []
    if procs:
        room = (
            50
            if view.height is None
            else max(1, view.height - sum(1 for _ in parts) - len(detail.get("gpus") or []) - 2)
        )
        parts.append(process_table(procs, room))
        if len(procs) > room:
            parts.append(Text(f"... {len(procs) - room} more processes", style="dim"))
    return Group(*parts)
