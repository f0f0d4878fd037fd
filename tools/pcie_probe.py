"""How NVML's PCIe byte counters behave under a known host-to-device copy (run on a lent GPU).

Copies a pinned host buffer to the GPU again and again for a few seconds, reading
NVML_FI_DEV_PCIE_COUNT_RX_BYTES and _TX_BYTES every 10 ms (with the value type the driver
reports for each) and nvmlDeviceGetPcieThroughput, and GPM's PCIe rates (Hopper) between
samples a second apart, then prints JSON: the bytes copied, what the counters moved read
every 10 ms and every second (each with 32-bit wraps carried), and the bytes GPM's rates
times the seconds between its samples make. tools/gpu_session.sh runs it; PyTorch copies.
"""

from __future__ import annotations

import itertools
import json
import threading
import time

import pynvml as nv


def main() -> None:
    import torch

    nv.nvmlInit()
    h = nv.nvmlDeviceGetHandleByIndex(0)
    ids = [nv.NVML_FI_DEV_PCIE_COUNT_RX_BYTES, nv.NVML_FI_DEV_PCIE_COUNT_TX_BYTES]
    members = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}
    reads: list[tuple[float, int, int]] = []
    types: set[tuple[int, int]] = set()
    rates: list[int] = []
    stop = threading.Event()
    gpm_bytes = {"rx": 0.0, "tx": 0.0}
    gpm_error: list[str] = []

    def gpm() -> None:
        """GPM's PCIe rates (MiB/s) between samples a second apart, times the seconds between them."""
        try:
            prev, at = nv.nvmlGpmSampleGet(h, nv.nvmlGpmSampleAlloc()), time.monotonic()
            while not stop.is_set():
                time.sleep(1.0)
                cur, now = nv.nvmlGpmSampleGet(h, nv.nvmlGpmSampleAlloc()), time.monotonic()
                req = nv.c_nvmlGpmMetricsGet_t()
                req.version, req.numMetrics, req.sample1, req.sample2 = (
                    nv.NVML_GPM_METRICS_GET_VERSION,
                    2,
                    prev,
                    cur,
                )
                req.metrics[0].metricId = nv.NVML_GPM_METRIC_PCIE_RX_PER_SEC
                req.metrics[1].metricId = nv.NVML_GPM_METRIC_PCIE_TX_PER_SEC
                nv.nvmlGpmMetricsGet(req)
                for i, key in enumerate(("rx", "tx")):
                    if req.metrics[i].nvmlReturn == 0:
                        gpm_bytes[key] += req.metrics[i].value * 2**20 * (now - at)
                nv.nvmlGpmSampleFree(prev)
                prev, at = cur, now
        except Exception as exc:  # a GPU without GPM: said in the output
            gpm_error.append(f"{type(exc).__name__}: {exc}")

    def watch() -> None:
        while not stop.is_set():
            got = nv.nvmlDeviceGetFieldValues(h, ids)
            types.update((int(v.valueType), int(v.nvmlReturn)) for v in got)
            rx, tx = (int(getattr(v.value, members.get(v.valueType, "ullVal"))) for v in got)
            reads.append((time.monotonic(), rx, tx))
            if len(reads) % 20 == 0:
                rates.append(nv.nvmlDeviceGetPcieThroughput(h, nv.NVML_PCIE_UTIL_RX_BYTES))
            time.sleep(0.01)

    host = torch.empty(1 << 30, dtype=torch.uint8).pin_memory()
    dev = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    dev.copy_(host)
    torch.cuda.synchronize()
    t = threading.Thread(target=watch)
    t.start()
    g = threading.Thread(target=gpm)
    g.start()
    time.sleep(0.5)
    copies, start = 0, time.monotonic()
    while time.monotonic() - start < 3.0:
        dev.copy_(host, non_blocking=True)
        torch.cuda.synchronize()
        copies += 1
    took = time.monotonic() - start
    time.sleep(0.5)
    stop.set()
    t.join()
    g.join()

    def moved(step: int, col: int) -> tuple[int, int]:
        seq = [int(r[col]) for r in reads[::step]]
        total, wraps = 0, 0
        for a, b in itertools.pairwise(seq):
            wrapped = b < a
            wraps += wrapped
            total += b - a + (wrapped << 32)
        return total, wraps

    per_s = max(1, round(1.0 / ((reads[-1][0] - reads[0][0]) / len(reads))))
    print(json.dumps({
        "copied_bytes": copies << 30,
        "copy_gb_per_s": round((copies << 30) / took / 1e9, 2),
        "value_types_and_returns": sorted(types),
        "reads": len(reads),
        "rx_moved_every_10ms": moved(1, 1),
        "rx_moved_every_1s": moved(per_s, 1),
        "tx_moved_every_10ms": moved(1, 2),
        "rx_max_raw": max(r[1] for r in reads),
        "pcie_throughput_rx_kb_s_max": max(rates) if rates else None,
        "gpm_rx_bytes": round(gpm_bytes["rx"]),
        "gpm_tx_bytes": round(gpm_bytes["tx"]),
        "gpm_error": gpm_error[0] if gpm_error else None,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
