"""Command-line pieces the agent and the collector share: addresses and log setup."""

from __future__ import annotations

import argparse
import re


def _host_port(value: str, lowest_port: int) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not lowest_port <= int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:7070)")
    return value


def dial_address(value: str) -> str:
    """HOST:PORT to connect to (port 1-65535)."""
    return _host_port(value, 1)


def listen_address(value: str) -> str:
    """HOST:PORT to listen on; port 0 picks a free one."""
    return _host_port(value, 0)


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: str) -> float:
    """'90', '90s', '10m', '2h', '1d', '1w' -> seconds; ValueError with the accepted forms otherwise."""
    m = _DURATION.match(value.strip())
    if not m:
        raise ValueError(f"{value!r} is not a duration (e.g. 30, 30s, 10m, 2h, 1d)")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def duration_arg(value: str) -> float:
    """parse_duration as an argparse type."""
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def setup_logging(level: str, fmt: str = "text") -> None:
    """One line per event on stderr, which journald and `ironsight up` collect; see ironsight.core.logs.
    SIGUSR1 writes every thread's stack there too (ironsight.core.logs.stacks_on_signal)."""
    from ironsight.core.logs import setup, stacks_on_signal

    setup(level, fmt)
    stacks_on_signal()


def add_logging_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument(
        "--log-format",
        default="text",
        choices=["text", "logfmt", "json"],
        help="one line per event: text, key=value (logfmt) or JSON",
    )
