"""Naive UTC datetimes <-> Unix nanoseconds, as the Query service's requests carry times."""

from __future__ import annotations

from datetime import datetime, timedelta

EPOCH = datetime(1970, 1, 1)


def to_ns(at: datetime) -> int:
    """Exact to the microsecond (a datetime's resolution); no float on the way."""
    return (at - EPOCH) // timedelta(microseconds=1) * 1000


def from_ns(ns: int) -> datetime:
    return EPOCH + timedelta(microseconds=ns // 1000)
