"""`ironsight doctor`: checks this server and prints each with its fix (over ironsight.cli.checks)."""

from __future__ import annotations

from pathlib import Path

import click

from ironsight.cli.common import Ctx


@click.command()
@click.option(
    "--path.procfs", "procfs", type=click.Path(path_type=Path), default=Path("/proc"), show_default=True
)
@click.option(
    "--path.sysfs", "sysfs", type=click.Path(path_type=Path), default=Path("/sys"), show_default=True
)
@click.option(
    "--state-dir", type=click.Path(path_type=Path), help="the spool's or database's folder to check for space"
)
@click.option(
    "--need-mb", type=click.IntRange(1), default=256, show_default=True, help="free space wanted there"
)
@click.option("--user", help="check GPU device access for this user (the services run as ironsight)")
@click.pass_obj
def doctor(c: Ctx, procfs: Path, sysfs: Path, state_dir: Path | None, need_mb: int, user: str | None) -> None:
    """Check this server: NVML and driver, GPU device access, each sampler's files, the clock, TLS files
    (given with --tls-*), free space, and the collector (given with --collector). Exits 1 on any FAIL.

    \b
    Examples:
      ironsight doctor
      ironsight --collector monitor:7070 --tls-ca ca.pem --tls-cert gpu-01.pem --tls-key gpu-01.key doctor
    """
    from ironsight.agent.main import state_dir as default_state_dir
    from ironsight.cli.checks import FAIL, OK, WARN, Setup, run

    tls_files = (c.tls.ca, c.tls.cert, c.tls.key) if c.tls else ()
    setup = Setup(procfs=procfs, sysfs=sysfs, state_dir=state_dir or default_state_dir(None),
                  need_bytes=need_mb << 20, tls_files=tls_files, collector=c.collector, user=user)  # fmt: skip
    checks = run(setup, c.tls)
    width = max(len(ch.name) for ch in checks)
    colour = {OK: "green", WARN: "yellow", FAIL: "red"}
    for ch in checks:
        line = f"{click.style(ch.status.ljust(4), fg=colour[ch.status])}  {ch.name.ljust(width)}  {ch.detail}"
        click.echo(line + (f"\n{'':{width + 8}}fix: {ch.fix}" if ch.fix and ch.status != OK else ""))
    failed = sum(ch.status == FAIL for ch in checks)
    click.echo(f"{len(checks)} checks, {failed} failed, {sum(ch.status == WARN for ch in checks)} warnings")
    if failed:
        raise SystemExit(1)


COMMANDS = (doctor,)
