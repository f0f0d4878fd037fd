"""`ironsight promql`: a PromQL query on the store file, or on a collector's Prometheus API."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import pyarrow as pa

from ironsight.cli.backend import LocalBackend, QueryError, parse_time
from ironsight.cli.common import Ctx, emit, format_option, step_ms
from ironsight.collector.promql.engine import Engine
from ironsight.collector.promql.render import render
from ironsight.collector.promql.source import Source
from ironsight.collector.promql.values import QueryError as PromQLError
from ironsight.offline.plot import Series
from ironsight.offline.plot import render as plot

POINTS = 250  # a range query's default resolution: about Grafana's for a panel


def _ms(value: str) -> int:
    try:
        when = parse_time(value)
    except QueryError as exc:
        raise click.ClickException(str(exc)) from exc
    return round(when.replace(tzinfo=UTC).timestamp() * 1000)


def _step_ms(text: str) -> int:
    try:
        return step_ms(text)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


def _local(c: Ctx, expr: str, start: int, end: int, step: int, ranged: bool) -> dict[str, Any]:
    try:
        backend = LocalBackend(c.db or Path("data/ironsight.duckdb"))
    except QueryError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        return render(Engine(Source(backend.con)).run(expr, start, end, step), start, step, ranged)
    except PromQLError as exc:
        raise click.ClickException(f"{exc.kind}: {exc}") from exc
    finally:
        backend.close()


def _remote(c: Ctx, url: str, expr: str, start: int, end: int, step: int, ranged: bool) -> dict[str, Any]:
    params = {"query": expr}
    if ranged:
        params |= {"start": str(start / 1000), "end": str(end / 1000), "step": str(step / 1000)}
    else:
        params["time"] = str(start / 1000)
    path = "/api/v1/query_range" if ranged else "/api/v1/query"
    context = None
    if c.tls is not None:
        context = ssl.create_default_context(cafile=str(c.tls.ca))
        context.load_cert_chain(str(c.tls.cert), str(c.tls.key))
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}{path}?{urllib.parse.urlencode(params)}", timeout=130,
                                    context=context) as r:  # fmt: skip
            body = json.loads(r.read())
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read() or b"{}")
        raise click.ClickException(
            f"{body.get('errorType', exc.code)}: {body.get('error', exc.reason)}"
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise click.ClickException(f"{url}: {exc}") from exc
    return dict(body["data"])


def _labels(metric: dict[str, str]) -> str:
    name = metric.get("__name__", "")
    rest = ", ".join(f'{k}="{v}"' for k, v in sorted(metric.items()) if k != "__name__")
    return f"{name}{{{rest}}}"


def _table(data: dict[str, Any]) -> pa.Table:
    kind, result = data["resultType"], data["result"]
    rows: list[tuple[datetime, str, float]] = []
    if kind in ("scalar", "string"):
        rows.append((_when(result[0]), kind, result[1]))
    for r in result if kind in ("vector", "matrix") else []:
        points = [r["value"]] if kind == "vector" else r["values"]
        rows += [(_when(t), _labels(r["metric"]), float(v)) for t, v in points]
    return pa.table(
        {"time": [r[0] for r in rows], "series": [r[1] for r in rows], "value": [r[2] for r in rows]}
    )


def _when(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)


@click.command()
@click.argument("expr")
@click.option(
    "--since", help="a range query from this time: 10m, 2h, 1d or an ISO time (default: one instant)"
)
@click.option("--until", default="now", show_default=True, help="the range's end, or the instant's time")
@click.option("--step", help="a range query's resolution, e.g. 15s or 1m (default: the range / 250)")
@click.option("--api", "api_url", metavar="URL", help="ask a collector's /api/v1 (its --http-listen, "
              "e.g. http://127.0.0.1:9470) instead of opening the file")  # fmt: skip
@click.option("--plot", "plot_", is_flag=True, help="draw each series of a range query in the terminal")
@format_option
@click.pass_obj
def promql(
    c: Ctx, expr: str, since: str | None, until: str, step: str | None, api_url: str | None, plot_: bool
) -> None:
    """A PromQL query over stored telemetry, answered as Prometheus would (docs/promql.md).

    \b
    Examples:
      ironsight promql 'avg by (instance) (DCGM_FI_DEV_GPU_UTIL)'
      ironsight promql 'rate(node_network_receive_bytes_total[1m])' --since 1h --step 1m --plot
      ironsight --format json promql 'sum(DCGM_FI_DEV_POWER_USAGE)' --api http://10.0.0.5:9470
    """
    if c.collector and not api_url:
        raise click.ClickException(
            "promql asks a running collector through its Prometheus API: --api http://HOST:PORT (its --http-listen)"
        )
    end = _ms(until)
    start = _ms(since) if since else end
    if start > end:
        raise click.ClickException(f"--since {since} is after --until {until}")
    ranged = since is not None
    step_ms = _step_ms(step) if step else max(1000, (end - start) // POINTS)
    if ranged and (end - start) // step_ms + 1 > 11_000:
        raise click.ClickException(f"--step {step}: over 11,000 points a series; give a larger step")
    data = (_remote(c, api_url, expr, start, end, step_ms, ranged) if api_url
            else _local(c, expr, start, end, step_ms, ranged))  # fmt: skip
    if c.fmt == "json":
        click.echo(json.dumps(data))
    elif plot_ and data["resultType"] == "matrix":
        series = [Series(_labels(r["metric"]), [float(t) - start / 1000 for t, _ in r["values"]],
                         [float(v) for _, v in r["values"]]) for r in data["result"]]  # fmt: skip
        click.echo(plot(expr, series))
    else:
        emit(_table(data), c.fmt, expr)


COMMANDS = [promql]
