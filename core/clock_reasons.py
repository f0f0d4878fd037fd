"""NVML's clock event reasons (why the SM clock is below its maximum), as words a person reads."""

from __future__ import annotations

# (bit, word, costs performance). The bits are nvmlClocksEventReason*: stable across driver
# versions, so written out here rather than imported (the CLI runs where pynvml may be absent).
REASONS: tuple[tuple[int, str, bool], ...] = (
    (0x1, "idle", False),
    (0x2, "app clocks", False),  # a user's application clock setting: chosen, not suffered
    (0x4, "power cap", True),
    (0x8, "HW slowdown", True),
    (0x10, "sync boost", False),
    (0x20, "SW thermal", True),
    (0x40, "HW thermal", True),
    (0x80, "power brake", True),
    (0x100, "display clock", False),
)
COSTLY = sum(bit for bit, _, costly in REASONS if costly)


def decode(mask: int | None) -> list[tuple[str, bool]]:
    """The reasons set in mask, as (word, costs performance); bits NVML may add later as hex."""
    if not mask:
        return []
    words = [(word, costly) for bit, word, costly in REASONS if mask & bit]
    unknown = mask & ~sum(bit for bit, _, _ in REASONS)
    if unknown:
        words.append((f"0x{unknown:x}", False))
    return words
