"""ironsight-collector's flags (each also a TOML key and an environment variable, see core.config)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from ironsight.collector.remote_write.writer import Config, ConfigError
from ironsight.core.flags import add_logging_args, duration_arg, listen_address


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ironsight-collector",
        description="Receive telemetry from ironsight agents over gRPC and store it in DuckDB.",
        epilog="examples:\n  ironsight-collector --db ./data/ironsight.duckdb --listen 127.0.0.1:7070 --insecure\n"
        "  ironsight-collector --listen 0.0.0.0:7070 --tls-ca pki/ca.pem --tls-cert pki/collector.pem "
        "--tls-key pki/collector.key",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--db", type=Path, default=Path("data/ironsight.duckdb"), help="DuckDB file (created if missing)"
    )
    p.add_argument(
        "--listen",
        type=listen_address,
        default="127.0.0.1:7070",
        help="gRPC HOST:PORT (default 127.0.0.1:7070)",
    )
    p.add_argument(
        "--http-listen",
        type=listen_address,
        help="serve /metrics and the Prometheus query API (/api/v1/, docs/promql.md) on HOST:PORT (off by default)",
    )
    p.add_argument(
        "--query-memory",
        type=int,
        default=256,
        metavar="MIB",
        help="memory for the query API's recent samples (the last 3 h of what queries ask, docs/promql.md); "
        "0: every query reads the store (default 256)",
    )
    _security_args(p)
    p.add_argument(
        "--detect-delay",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="judge each detector step this long after it ends, for batches in flight (default 5)",
    )
    p.add_argument("--no-detect", action="store_true", help="do not run the bottleneck detector")
    p.add_argument(
        "--retention-raw", type=duration_arg, default=7 * 86400.0, metavar="DURATION",
        help="keep raw samples this long, e.g. 7d, 36h (default 7d); one-minute rollups stay longer",
    )  # fmt: skip
    p.add_argument(
        "--retention-rollups", type=duration_arg, default=90 * 86400.0, metavar="DURATION",
        help="keep one-minute rollups this long (default 90d)",
    )  # fmt: skip
    p.add_argument(
        "--cold-after", type=duration_arg, default=0.0, metavar="DURATION",
        help="move each whole UTC day of raw samples this long after it ends into Parquet files beside the "
        "database (DB.cold/), about a ninth of the space, every value exact and still queried as before "
        "(default 0: off), e.g. 2h",
    )  # fmt: skip
    p.add_argument(
        "--max-db-bytes", type=int, default=0, metavar="BYTES",
        help="keep the database's used space (with the cold tier's files) under this by pruning the oldest raw "
        "samples first (default 0: no cap)",
    )  # fmt: skip
    p.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a detector threshold or window (repeatable; docs/detector.md lists them), e.g. step_s=10",
    )
    _remote_write_args(p)
    _receive_args(p)
    add_logging_args(p)
    return p


def _security_args(p: argparse.ArgumentParser) -> None:
    sec = p.add_argument_group("security (mutual TLS; see `ironsight certs`)")
    sec.add_argument(
        "--tls-ca", type=Path, metavar="FILE", help="CA whose certificates agents and CLIs must present"
    )
    sec.add_argument(
        "--tls-cert", type=Path, metavar="FILE", help="the collector's certificate (gRPC and /metrics)"
    )
    sec.add_argument("--tls-key", type=Path, metavar="FILE", help="its private key")
    sec.add_argument(
        "--insecure", action="store_true", help="plaintext instead of TLS (loopback only unless...)"
    )
    sec.add_argument(
        "--allow-remote-insecure",
        action="store_true",
        help="...this too: plaintext on a non-loopback address, readable and writable by anyone who reaches it",
    )


def _remote_write_args(p: argparse.ArgumentParser) -> None:
    rw = p.add_argument_group("remote write (forward every stored sample to Prometheus, Mimir, Thanos, ...)")
    rw.add_argument("--remote-write-url", metavar="URL", help="e.g. http://prometheus:9090/api/v1/write")
    rw.add_argument(
        "--remote-write-label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="label added to every forwarded series (repeatable), e.g. cluster=eu1",
    )
    rw.add_argument("--remote-write-bearer-token-file", type=Path, metavar="FILE")
    rw.add_argument("--remote-write-username", default="", metavar="USER", help="basic auth user")
    rw.add_argument("--remote-write-password-file", type=Path, metavar="FILE", help="basic auth password")
    rw.add_argument("--remote-write-ca-file", type=Path, metavar="FILE", help="CA bundle for https URLs")
    rw.add_argument("--remote-write-cert-file", type=Path, metavar="FILE", help="client certificate (mTLS)")
    rw.add_argument("--remote-write-key-file", type=Path, metavar="FILE", help="client certificate's key")
    rw.add_argument(
        "--remote-write-queue-values",
        type=int,
        default=2_000_000,
        metavar="N",
        help="stored values waiting to be sent before the oldest are dropped (default 2000000)",
    )


def _receive_args(p: argparse.ArgumentParser) -> None:
    rx = p.add_argument_group(
        "remote write receiver (store what an existing Prometheus or vmagent scrapes from node_exporter and "
        "dcgm-exporter; docs/receive.md)"
    )
    rx.add_argument(
        "--remote-write-listen", type=listen_address, metavar="HOST:PORT",
        help="accept Prometheus remote write 1.0 on POST /api/v1/write here (off by default)",
    )  # fmt: skip
    rx.add_argument(
        "--remote-write-senders", type=Path, metavar="FILE",
        help="TOML file of the senders allowed in (token, basic auth or client certificate) and the nodes each "
        "may write for; needed with TLS, optional with --insecure (then anyone may write for any node)",
    )  # fmt: skip
    rx.add_argument(
        "--remote-write-node-label", default="instance", metavar="LABEL",
        help="the label that names a received series' node (default instance)",
    )  # fmt: skip
    rx.add_argument(
        "--remote-write-keep-port", action="store_true",
        help="keep a :PORT at the end of the node label's value (by default gpu-7:9100 is node gpu-7)",
    )  # fmt: skip
    rx.add_argument(
        "--remote-write-settle", type=float, default=10.0, metavar="SECONDS",
        help="received samples settle into rows this long after they arrived (default 10)",
    )  # fmt: skip


# Flags with the prefix that do not need --remote-write-url: the receiver's, and the queue's (a default).
_NO_URL_NEEDED = ("remote_write_listen", "remote_write_senders", "remote_write_node_label", "remote_write_keep_port",
             "remote_write_settle", "remote_write_queue_values")  # fmt: skip


def remote_write_config(args: argparse.Namespace) -> Config | None:
    if not args.remote_write_url:
        if any(v for k, v in vars(args).items() if k.startswith("remote_write_") and k not in _NO_URL_NEEDED):
            raise ConfigError("--remote-write-* options need --remote-write-url")
        return None
    labels = {}
    for item in args.remote_write_label:
        key, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", key) or key.startswith("__"):
            raise ConfigError(f"--remote-write-label {item!r}: want NAME=VALUE with a Prometheus label name")
        labels[key] = value
    if args.remote_write_queue_values < 1000:
        raise ConfigError("--remote-write-queue-values must be at least 1000")
    config = Config(
        url=args.remote_write_url,
        labels=labels,
        bearer_token_file=args.remote_write_bearer_token_file,
        username=args.remote_write_username,
        password_file=args.remote_write_password_file,
        ca_file=args.remote_write_ca_file,
        cert_file=args.remote_write_cert_file,
        key_file=args.remote_write_key_file,
        queue_values=args.remote_write_queue_values,
    )
    config.check()
    return config
