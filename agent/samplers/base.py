"""What a sampler is, what it returns, and the registry that names every sampler."""

from __future__ import annotations

import functools
import logging
import os
import resource
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ironsight.agent.jobs.options import JobOptions
from ironsight.core.reading import DeviceInfo, Reading

log = logging.getLogger("ironsight.agent")


@dataclass(frozen=True)
class Paths:
    """Roots of the trees samplers read, like node_exporter's --path.* flags."""

    procfs: Path = Path("/proc")
    sysfs: Path = Path("/sys")
    rootfs: Path = Path("/")

    def proc(self, *parts: str) -> Path:
        return self.procfs.joinpath(*parts)

    def sys(self, *parts: str) -> Path:
        return self.sysfs.joinpath(*parts)


class Sampler(Protocol):
    name: str

    def sample(self) -> Reading: ...

    def inventory(self) -> list[DeviceInfo]: ...

    def close(self) -> None: ...


class BaseSampler:
    """Defaults for the optional parts of the Sampler protocol."""

    name = "base"

    def __init__(self, ctx: SamplerContext) -> None:
        self.ctx = ctx
        self.paths = ctx.paths

    def inventory(self) -> list[DeviceInfo]:
        return []

    def close(self) -> None:
        return None


@dataclass
class SamplerContext:
    paths: Paths = field(default_factory=Paths)
    # The GPU sampler's NVML module; None means import the real pynvml lazily.
    # Tests pass a double here.
    nvml: Any = None
    jobs: JobOptions = field(default_factory=JobOptions)
    # What Every counts seconds by (None: time.monotonic); tests pass their own.
    clock: Callable[[], float] | None = None


@dataclass(frozen=True)
class SamplerSpec:
    name: str
    default_enabled: bool
    factory: Callable[[SamplerContext], Sampler]
    help: str


REGISTRY: dict[str, SamplerSpec] = {}


def register(name: str, help: str, default_enabled: bool = True) -> Callable[[type[Any]], type[Any]]:
    """Class decorator: one line per sampler module gives it a name and an enable flag."""

    def wrap(cls: type[Any]) -> type[Any]:
        cls.name = name
        REGISTRY[name] = SamplerSpec(name, default_enabled, cls, help)
        return cls

    return wrap


# Sources that the kernel or the hardware refreshes about once a second or slower, or
# whose every read costs a driver call (per-core frequency and throttle counts, hwmon
# and thermal zones, load averages, NUMA memory), are read at most this often and their
# last values repeated at shorter intervals: at 0.1 s on a 192-core node with 20 hwmon
# chips that is thousands of reads a second saved, and only sub-second timing is lost
# (counters among them lose no events).
SLOW_EVERY_S = 1.0
# Which files, devices and cpus exist changes with hotplug and drivers only: looked up again this often.
RESCAN_EVERY_S = 60.0


class Every:
    """due() is true at most once per period (and always the first time)."""

    # Ticks come on a timer: one landing a hair before the period is over counts as on time.
    SLACK_S = 0.05

    def __init__(self, seconds: float = SLOW_EVERY_S, clock: Callable[[], float] | None = None) -> None:
        self.seconds = seconds
        self.clock = clock
        self._at = -float("inf")

    def due(self) -> bool:
        now = self.clock() if self.clock is not None else time.monotonic()
        if now - self._at < self.seconds - self.SLACK_S:
            return False
        self._at = now
        return True

    def expire(self) -> None:
        """Makes the next due() true (something looked up is gone: look again now)."""
        self._at = -float("inf")


class OpenFiles:
    """Open descriptors of the proc and sys files samplers read every tick.

    Both filesystems generate a file's content afresh on a read at offset 0,
    so a kept descriptor and pread() replace the path lookup, open and close
    of every tick (measured: /proc/stat 22 -> 12 us, a sysfs attribute 15 ->
    1.5 us). Only regular files are kept (a FIFO or device keeps the plain
    path), at most MAX of them, all closed once a minute so a replaced file
    is picked up, and any error drops the descriptor.
    """

    # A big node keeps ~700 (192 cores' frequency and throttle files, 8 HCAs' ~30
    # counters each, 60 hwmon sensors): past MAX every read would reopen its file.
    # A quarter of the descriptor limit at most, leaving the rest to sockets and the spool.
    MAX = 2048
    REFRESH_S = 60.0

    def __init__(self) -> None:
        self._fds: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()
        self._opened_at = time.monotonic()

    def _get(self, key: str) -> int | None:
        with self._lock:
            if time.monotonic() - self._opened_at > self.REFRESH_S:
                self._close_all()
            fd = self._fds.get(key)
            if fd is not None:
                self._fds.move_to_end(key)
            return fd

    def _keep(self, key: str, fd: int) -> None:
        with self._lock:
            self._fds[key] = fd
            while len(self._fds) > min(self.MAX, _fd_limit() // 4):
                os.close(self._fds.popitem(last=False)[1])

    def _drop(self, key: str) -> None:
        with self._lock:
            fd = self._fds.pop(key, None)
        if fd is not None:
            os.close(fd)

    def forget(self) -> None:
        """Closes every kept descriptor. A removed sysfs device fails reads on its old
        descriptors (ENODEV), which a plain file in a test tree cannot do: tests call this."""
        with self._lock:
            self._close_all()

    def _close_all(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self._opened_at = time.monotonic()

    def read(self, path: Path | str) -> bytes | None:
        key = os.fspath(path)
        fd = self._get(key)
        if fd is None:
            try:
                fd = os.open(key, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return None
            try:
                regular = stat.S_ISREG(os.fstat(fd).st_mode)
            except OSError:
                os.close(fd)
                return None
            if not regular:
                try:
                    return _read_all(fd)
                finally:
                    os.close(fd)
            self._keep(key, fd)
        try:
            data = os.pread(fd, 65536, 0)
            while len(data) % 65536 == 0 and data:
                more = os.pread(fd, 65536, len(data))
                if not more:
                    break
                data += more
            return data
        except OSError:
            self._drop(key)  # gone (ENODEV) or unreadable now
            return None


@functools.cache
def _fd_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def raise_fd_limit() -> None:
    """Soft descriptor limit up to the hard one (as Go programs do at start): systemd and
    shells give 1024 soft, which would cap the kept descriptors at 256."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 16
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, 1 << 16), hard))
        except (ValueError, OSError):
            return
    _fd_limit.cache_clear()


def _read_all(fd: int) -> bytes | None:
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except OSError:
        return None
    return b"".join(chunks)


open_files = OpenFiles()


def read_int_fast(path: str) -> int | None:
    """read_int for files that hold one decimal number (sysfs counters, temperatures):
    int() takes the bytes as they are, no decode, strip or split, the common case on
    the hot path; anything else is parsed as read_int would, from the same read."""
    data = open_files.read(path)
    if data is None:
        return None
    try:
        return int(data)
    except ValueError:
        return parse_int(data.decode(errors="replace").strip())


def read_text(path: Path | str) -> str | None:
    """The file's content stripped, or None when it is missing or unreadable."""
    data = open_files.read(path)
    return None if data is None else data.decode(errors="replace").strip()


def read_int(path: Path | str) -> int | None:
    return parse_int(read_text(path))


def parse_int(text: str | None) -> int | None:
    """The first word of a file's stripped text as an int (0x.. too); None when it is not one."""
    if not text:
        return None
    try:
        return int(text.split()[0], 0)
    except (ValueError, IndexError):
        return None


def to_int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def listdir(path: Path) -> Iterator[Path]:
    """Children sorted by name; nothing when the folder is missing."""
    try:
        children = sorted(path.iterdir(), key=lambda p: p.name)
    except OSError:
        return iter(())
    return iter(children)
