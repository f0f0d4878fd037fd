"""`ironsight certs`: the CA and certificates mutual TLS needs (over ironsight.cli.pki)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click


@click.group()
def certs() -> None:
    """A CA and the certificates mutual TLS needs: one for the collector, one per node (its identity).

    \b
    Examples:
      ironsight certs init
      ironsight certs collector monitor.example --ip 10.0.0.5
      ironsight certs issue gpu-01
      ironsight certs issue alice --reader # a user of the CLI
    """


def _dir_option(f: Any) -> Any:
    return click.option(
        "--dir", "directory", type=click.Path(path_type=Path), default=Path("pki"), show_default=True,
        help="where the CA lives and certificates are written",
    )(f)  # fmt: skip


@certs.command("init")
@_dir_option
@click.option("--days", type=click.IntRange(1, 36500), default=3650, show_default=True)
def certs_init(directory: Path, days: int) -> None:
    """Create the CA (ca.pem, and ca.key: keep it off the nodes)."""
    from ironsight.cli.pki import CertError, init

    try:
        path = init(directory, days)
    except CertError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"CA in {path} (key {directory / 'ca.key'}, mode 0600)")


@certs.command("issue")
@click.argument("node")
@click.option(
    "--dns", "names", multiple=True, help="another host name Prometheus scrapes /metrics by (repeatable)"
)
@click.option("--ip", "ips", multiple=True, help="an address Prometheus scrapes /metrics at (repeatable)")
@click.option(
    "--reader", is_flag=True, help="for a person or a service that queries the collector, not a node"
)
@_dir_option
@click.option("--days", type=click.IntRange(1, 3650), default=365, show_default=True)
def certs_issue(
    node: str, names: tuple[str, ...], ips: tuple[str, ...], reader: bool, directory: Path, days: int
) -> None:
    """A certificate naming NODE: an agent with --node-id NODE, or with --reader a CLI user or a service.

    A node's certificate may only send that node's data (its names also let it serve /metrics over HTTPS
    under them; --dns, --ip add more; every name is a node id its holder may write as). A reader's may
    query and run the detector through the collector, and may not send data."""
    from ironsight.cli.pki import CertError, issue

    try:
        path = issue(directory, node, list(names), list(ips), days, node, reader=reader)
    except CertError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{path} and {path.with_suffix('.key')} for {'reader' if reader else 'node'} {node}")


@certs.command("collector")
@click.argument("names", nargs=-1, required=True)
@click.option("--ip", "ips", multiple=True, help="an IP address agents dial (repeatable)")
@_dir_option
@click.option("--days", type=click.IntRange(1, 3650), default=365, show_default=True)
def certs_collector(names: tuple[str, ...], ips: tuple[str, ...], directory: Path, days: int) -> None:
    """The collector's certificate, naming every host name (NAMES) and address (--ip) agents dial."""
    from ironsight.cli.pki import CertError, issue

    try:
        path = issue(directory, names[0], list(names[1:]), list(ips), days, "collector")
    except CertError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{path} and {path.with_suffix('.key')} for {', '.join([*names, *ips])}")


COMMANDS = (certs,)
