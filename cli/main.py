"""The `ironsight` command group: its shared options, and every command group's module registered under it."""

from __future__ import annotations

from pathlib import Path

import click

from ironsight.cli import certs, data, doctor, findings, jobs, promql, top, traces, up
from ironsight.cli.common import FORMATS, Ctx
from ironsight.core.transport import TransportError, check_dial, tls_from


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db", type=click.Path(path_type=Path), help="DuckDB file to read (default ./data/ironsight.duckdb)"
)
@click.option("--collector", metavar="HOST:PORT", help="ask a running collector instead of opening the file")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--tls-ca", type=click.Path(path_type=Path), help="CA that signed the collector's certificate")
@click.option(
    "--tls-cert", type=click.Path(path_type=Path), help="this client's certificate (ironsight certs issue)"
)
@click.option("--tls-key", type=click.Path(path_type=Path), help="its private key")
@click.option("--insecure", is_flag=True, help="plaintext to a collector that is not on this machine")
@click.pass_context
def cli(
    ctx: click.Context,
    db: Path | None,
    collector: str | None,
    fmt: str,
    tls_ca: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    insecure: bool,
) -> None:
    """Query telemetry stored by ironsight, or run everything on this machine (`ironsight up`).

    \b
    Examples:
      ironsight nodes
      ironsight --collector 127.0.0.1:7070 series --node n1 --metric gpu.temperature_celsius --since 10m
      ironsight --format csv query "SELECT node, max(load1) FROM load GROUP BY node"
    """
    try:
        tls = tls_from(tls_ca, tls_cert, tls_key)
        if collector and ctx.invoked_subcommand != "certs":
            check_dial(collector, tls, insecure)
    except TransportError as exc:
        raise click.UsageError(str(exc)) from None
    ctx.obj = Ctx(db, collector, fmt, tls, insecure)


for _module in (data, promql, jobs, top, up, traces, findings, certs, doctor):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main() -> None:
    cli(prog_name="ironsight")


if __name__ == "__main__":
    main()
