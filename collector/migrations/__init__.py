"""Schema changes as named, numbered SQL files, applied once each and recorded in schema_migrations."""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any

log = logging.getLogger("ironsight.collector")


def available() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every NNNN_name.sql beside this file, in order."""
    out = []
    for entry in resources.files(__package__).iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            out.append((int(name[:4]), name[5:-4], entry.read_text()))
    return sorted(out)


def migrate(con: Any) -> list[int]:
    """Applies what is missing, each in its own transaction; returns the versions applied."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMP)"
    )
    done = {row[0] for row in con.execute("SELECT version FROM schema_migrations").fetchall()}
    applied = []
    for version, name, sql in available():
        if version in done:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(sql)
            con.execute("INSERT INTO schema_migrations VALUES (?, ?, now()::TIMESTAMP)", [version, name])
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        log.info("applied migration %04d %s", version, name)
        applied.append(version)
    return applied
