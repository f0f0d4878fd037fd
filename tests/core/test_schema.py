"""Device names as stored: what the kernel gave, escaped only where a string on the wire cannot carry it."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ironsight.core.schema import MAX_DEVICE_NAME, device_name, device_name_problem


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("eth0", "eth0"),
        ("ñic0", "ñic0"),
        ("網卡1", "網卡1"),
        ('my "disk" \\ 2', 'my "disk" \\ 2'),  # spaces, quotes and backslashes as they are
        ("\u00a0nbsp", "\u00a0nbsp"),
        (os.fsdecode(b"eth\xff0"), "eth\\xff0"),  # a byte that is not UTF-8, as os.listdir hands it over
        ("x\x01y\x7f", "x\\x01y\\x7f"),  # control characters
        ("z" * 300, "z" * MAX_DEVICE_NAME),
    ],
)
def test_device_names_are_stored_as_the_kernel_gave_them_where_they_can_be(raw: str, stored: str) -> None:
    assert device_name(raw) == stored
    assert device_name_problem(device_name(raw)) is None
    stored.encode("utf-8")  # a protobuf string: must be valid UTF-8


def test_the_collector_still_refuses_hostile_names() -> None:
    assert device_name_problem("\x00evil") == "has the control character '\\x00'"
    assert device_name_problem("a\nb") is not None
    assert (
        device_name_problem("y" * (MAX_DEVICE_NAME + 1))
        == f"is {MAX_DEVICE_NAME + 1} characters, more than 256"
    )
    assert device_name_problem("ñic0") is None


@settings(max_examples=500, deadline=None)
@given(raw=st.one_of(st.text(max_size=300), st.binary(max_size=64).map(os.fsdecode)))
def test_every_name_the_kernel_can_give_is_one_the_collector_takes(raw: str) -> None:
    """Any text, and any bytes as os.listdir decodes them: stored form valid UTF-8, accepted, unchanged if it can be."""
    stored = device_name(raw)
    stored.encode("utf-8")
    assert device_name_problem(stored) is None
    if raw.isprintable() and len(raw) <= MAX_DEVICE_NAME:
        assert stored == raw
