"""How the collector's interpreter and allocators are set for a server's load, once at start.

Each setting was measured in this project's benches on 2 cores (docs/performance.md):

- The interpreter lock's switch interval, 1 ms (Python's default: 5 ms). The store's writer is
  the collector's critical path: each commit group's Python waits behind the stream handling on
  the event loop, up to a whole interval at a time. At 1 ms a fleet's batches went 1,729-1,757 ->
  1,928-1,939 a second (bench/run.py fleet-ingest, interleaved), at less CPU a value; 0.2 ms
  gained nothing more.
- The allocators. A dashboard load makes and frees about a hundred MB of arrays within a few
  hundred milliseconds: each answer's text in Arrow, numpy's step grids, DuckDB's results.
  Arrow's default allocator in the pyarrow wheels (mimalloc) hands freed pages back to the kernel
  at once, and glibc maps each block over its dynamic threshold afresh and unmaps it when freed,
  so every page faulted in again, zeroed, on the next query: a third of the collector's CPU under
  the GPU dashboard's load was the kernel's (perf: page faults, madvise, unmapping). Arrow on the
  system allocator, with glibc keeping blocks under MMAP_THRESHOLD in its heap and up to
  TRIM_THRESHOLD of free heap before returning it, took that load from 0.44-0.51 s to 0.31-0.37 s
  (interleaved, bench/run.py promql's load); its peak memory rose from 441-486 to 538-559 MiB.
- The garbage collector's youngest generation, collected every 50,000 new objects rather than
  700: under the dashboard's load its collections and what they traversed were 4-5 % of the
  collector's CPU (perf) and went away; the dashboard went 0.34-0.37 -> 0.31-0.33 s (interleaved).
  Ingest (bench/run.py fleet-ingest) moved within its noise. Objects made while starting are
  frozen out of collections (gc.freeze, once serving).
"""

from __future__ import annotations

import ctypes
import gc
import logging
import platform
import sys

import pyarrow as pa

log = logging.getLogger(__name__)

SWITCH_INTERVAL_S = 0.001
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters (malloc.h)
MMAP_THRESHOLD = 64 << 20  # blocks below this come from the heap (a dashboard answer's are a few MB)
TRIM_THRESHOLD = 256 << 20  # free heap kept for the next query before it is returned
YOUNG_OBJECTS = 50_000


def tune() -> None:
    """The settings above; on a C library other than glibc, all but glibc's thresholds."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_OBJECTS, middle, old)
    pa.set_memory_pool(pa.system_memory_pool())
    if platform.libc_ver()[0] != "glibc":
        return
    try:
        libc = ctypes.CDLL(None)
        ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    except (OSError, AttributeError) as exc:  # no mallopt: the defaults, slower, nothing worse
        ok, why = 0, str(exc)
    else:
        why = "mallopt refused"
    if not ok:
        log.info("glibc's allocator keeps its defaults (%s)", why)


def started() -> None:
    """Once serving: what was made while starting and is still in use stays so; collections skip it
    (its garbage is collected first, or freezing would keep it for good)."""
    gc.collect()
    gc.freeze()
