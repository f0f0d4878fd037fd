"""The GPU workloads the real traces in tests/traces/h200-*.trace were recorded under.

Run on a machine with a CUDA GPU and PyTorch (tools/gpu_session.sh does, on a lent H200);
never by the tests. Each workload writes JSON lines to --log: its phases ("phase", with
start and end in Unix nanoseconds) and, for the training loops, each iteration's times,
so a test can hold what the agent recorded against what the job itself saw.

  burn       bf16 matrix products back to back: the GPU fully busy, power near its limit
  starved    a training loop fed by a CPU-bound data loader: first with workers enough
             for the GPU (healthy), then the same loader left a fifth of the cores by
             busy processes taking the node (the GPU waits for input, cores all busy)
  lockstep   two ranks on the one GPU meeting at a barrier each iteration (gloo), rank 1
             computing half as long again: rank 0 waits for it at every step
  copy       a pinned 1 GiB host buffer copied to the GPU again and again, a pause, then
             the GPU's copy back to the host: known bytes each way over PCIe
  transfer   a training step's compute on a batch already on the GPU (resident), then the
             same step each fed a fresh 4 GiB batch from pinned host memory first, not
             overlapped: the step waits on the host-to-device copy most of the time

PyTorch is imported inside each workload: this file is read by the linters without it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path
from typing import Any


def _log(path: Path, **record: Any) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


DEVICE = "cuda"  # --device cpu runs the same code on a machine without one, to check this script


def _sync(torch: Any) -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def _n() -> int:
    return 8192 if DEVICE == "cuda" else 256


def _matmuls_for(torch: Any, seconds: float, a: Any, b: Any) -> int:
    """Matrix products until `seconds` of GPU time have passed; how many ran."""
    done, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(4):
            a @ b
        _sync(torch)
        done += 4
    return done


def burn(seconds: float, log: Path) -> None:
    import torch

    a = torch.randn(_n(), _n(), device=DEVICE, dtype=torch.bfloat16)
    b = torch.randn(_n(), _n(), device=DEVICE, dtype=torch.bfloat16)
    start = time.time_ns()
    n = _matmuls_for(torch, seconds, a, b)
    end = time.time_ns()
    tflops = n * 2 * _n() ** 3 / ((end - start) / 1e9) / 1e12
    _log(log, phase="burn", start_ns=start, end_ns=end, products=n, tflops=round(tflops, 1))


def _spin(stop_at: float) -> None:
    """A process that wants a core and never yields it: another tenant, or an ETL job."""
    x = 0
    while time.monotonic() < stop_at:
        for _ in range(100_000):
            x += 1


def _decode(seed: int) -> Any:
    """One sample's 'decoding': some milliseconds of numpy on a core, as JPEG decoding is."""
    import numpy as np

    rng = np.random.default_rng(seed)
    img = rng.random((3, 160, 160), dtype=np.float32)
    for _ in range(4):
        img = np.sqrt(np.abs(np.fft.irfft2(np.fft.rfft2(img), s=img.shape[1:])) + 1e-3)
    return (img[:, :64, :64] * (255 / img.max())).astype(np.uint8)  # decoded pixels are bytes


class _Images:
    """A map-style dataset whose items cost CPU to make (torch's Dataset protocol, duck-typed)."""

    def __len__(self) -> int:
        return 1 << 30

    def __getitem__(self, i: int) -> Any:
        import torch

        return torch.from_numpy(_decode(i)), i % 10


def starved(healthy_s: float, starved_s: float, log: Path) -> None:
    """Each batch is trained on for TRAIN_S (a few steps); a batch takes a worker BATCH_CPU_S.

    With cores - 2 workers the loader makes batches faster than the GPU takes them (healthy);
    then four spinning processes a core leave the workers a fifth of the machine, and the
    GPU waits for input most of each second with every core busy: starved, cause cpu."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader

    train_s, batch_cpu_s = 0.25, 2.5
    cores = os.cpu_count() or 1
    t0 = time.perf_counter()
    for i in range(20):
        _decode(i)
    batch = max(8, round(batch_cpu_s / ((time.perf_counter() - t0) / 20)))
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 256, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(8),
        nn.Flatten(),
        nn.Linear(256 * 64, 10),
    ).to(DEVICE)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    ballast = torch.empty(4 << 30, dtype=torch.uint8, device=DEVICE)  # a model's weights and optimizer state
    workers = max(1, cores - 2)
    loader = DataLoader(_Images(), batch_size=batch, num_workers=workers, prefetch_factor=2)
    _log(log, setup="starved", batch=batch, workers=workers, cores=cores, train_s=train_s)
    phase, phase_start = "healthy", time.time_ns()
    spinners: list[Any] = []
    t_end = time.monotonic() + healthy_s + starved_s
    t_starve = time.monotonic() + healthy_s
    it, wait = 0, time.monotonic()
    for x, y in loader:
        got = time.monotonic()
        x, y = x.to(DEVICE, non_blocking=True).float() / 255, y.to(DEVICE, non_blocking=True)
        steps = 0
        while time.monotonic() - got < train_s:
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            _sync(torch)
            steps += 1
        done = time.monotonic()
        _log(
            log,
            iteration=it,
            phase=phase,
            wait_s=round(got - wait, 4),
            compute_s=round(done - got, 4),
            steps=steps,
        )
        it, wait = it + 1, done
        if phase == "healthy" and done >= t_starve:
            end = time.time_ns()
            _log(log, phase="healthy", start_ns=phase_start, end_ns=end)
            phase, phase_start = "starved", end
            ctx = mp.get_context("fork")
            spinners = [ctx.Process(target=_spin, args=(t_end + 5,), daemon=True) for _ in range(4 * cores)]
            for p in spinners:
                p.start()
        if done >= t_end:
            break
    _log(log, phase=phase, start_ns=phase_start, end_ns=time.time_ns(), cause="cpu")
    for p in spinners:
        p.terminate()
    del ballast


def copy(seconds: float, log: Path) -> None:
    """Host to device for `seconds`, 4 s of nothing, device to host for `seconds`; each phase's bytes."""
    import torch

    size = 1 << 30 if DEVICE == "cuda" else 1 << 24
    host = torch.empty(size, dtype=torch.uint8)
    host = host.pin_memory() if DEVICE == "cuda" else host
    dev = torch.empty(size, dtype=torch.uint8, device=DEVICE)
    for phase in ("h2d", "pause", "d2h"):
        start, copies = time.time_ns(), 0
        if phase == "pause":
            time.sleep(4)
        else:
            dst, src = (dev, host) if phase == "h2d" else (host, dev)
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                dst.copy_(src, non_blocking=True)
                _sync(torch)
                copies += 1
        _log(log, phase=phase, start_ns=start, end_ns=time.time_ns(), copied_bytes=copies * size)


def transfer(resident_s: float, transfer_s: float, log: Path) -> None:
    """Each step: (in the transfer phase) the batch copied to the GPU, then six bf16 products on it."""
    import torch

    size = 4 << 30 if DEVICE == "cuda" else 1 << 24
    host = torch.empty(size, dtype=torch.uint8)
    host = host.pin_memory() if DEVICE == "cuda" else host
    batch = torch.empty(size, dtype=torch.uint8, device=DEVICE)
    a = torch.randn(_n(), _n(), device=DEVICE, dtype=torch.bfloat16)
    b = torch.randn(_n(), _n(), device=DEVICE, dtype=torch.bfloat16)
    for phase, seconds in (("resident", resident_s), ("transfer", transfer_s)):
        start, end, it, computing = time.time_ns(), time.monotonic() + seconds, 0, 0.0
        while time.monotonic() < end:
            t0 = time.monotonic()
            if phase == "transfer":
                batch.copy_(host)
                _sync(torch)
            t1 = time.monotonic()
            for _ in range(6):
                a @ b
            _sync(torch)
            t2 = time.monotonic()
            if phase == "transfer":  # the resident phase's some 2,500 steps are summed below only
                _log(log, iteration=it, phase=phase, copy_s=round(t1 - t0, 4), compute_s=round(t2 - t1, 4))
            it, computing = it + 1, computing + t2 - t1
        _log(log, phase=phase, start_ns=start, end_ns=time.time_ns(), batch_bytes=size, steps=it,
             compute_s=round(computing, 3), **({"cause": "host_to_device"} if phase == "transfer" else {}))  # fmt: skip


def _rank(rank: int, seconds: float, step_s: float, slow: float, log: str, port: int, device: str) -> None:
    import torch
    import torch.distributed as dist

    global DEVICE
    DEVICE = device  # a spawned process starts from this module's defaults

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    a = torch.randn(_n(), _n(), device=DEVICE, dtype=torch.bfloat16)
    b = torch.randn(_n(), _n(), device=DEVICE, dtype=torch.bfloat16)
    grads = torch.ones(16 << 20, device=DEVICE)  # 64 MB through the host each step, as gloo does
    ballast = torch.empty(2 << 30, dtype=torch.uint8, device=DEVICE)
    compute = step_s * (slow if rank == 1 else 1.0)
    dist.barrier()
    start = time.time_ns()
    it, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.monotonic()
        _matmuls_for(torch, compute, a, b)
        t1 = time.monotonic()
        cpu = grads.cpu()
        dist.all_reduce(cpu)
        grads.copy_(cpu)
        _sync(torch)
        t2 = time.monotonic()
        _log(Path(log), iteration=it, rank=rank, compute_s=round(t1 - t0, 4), sync_s=round(t2 - t1, 4))
        it += 1
    if rank == 0:
        _log(Path(log), phase="lockstep", start_ns=start, end_ns=time.time_ns(), slow_rank=1, slow=slow)
    dist.destroy_process_group()
    del ballast


def lockstep(seconds: float, step_s: float, slow: float, log: Path) -> None:
    ctx = mp.get_context("spawn")
    ranks = [
        ctx.Process(target=_rank, args=(r, seconds, step_s, slow, str(log), 29511, DEVICE)) for r in (0, 1)
    ]
    for p in ranks:
        p.start()
    for p in ranks:
        p.join()
    if any(p.exitcode for p in ranks):
        sys.exit(f"lockstep: a rank failed ({[p.exitcode for p in ranks]})")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="workload", required=True)
    b = sub.add_parser("burn")
    b.add_argument("--seconds", type=float, default=60)
    s = sub.add_parser("starved")
    s.add_argument("--healthy-seconds", type=float, default=30)
    s.add_argument("--starved-seconds", type=float, default=90)
    ls = sub.add_parser("lockstep")
    ls.add_argument("--seconds", type=float, default=60)
    ls.add_argument("--step-seconds", type=float, default=2.0)
    ls.add_argument("--slow", type=float, default=1.5)
    c = sub.add_parser("copy")
    c.add_argument("--seconds", type=float, default=8)
    t = sub.add_parser("transfer")
    t.add_argument("--resident-seconds", type=float, default=25)
    t.add_argument("--transfer-seconds", type=float, default=40)
    for p in (b, s, ls, c, t):
        p.add_argument("--log", type=Path, required=True)
        p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    args = parser.parse_args()
    global DEVICE
    DEVICE = args.device
    if args.workload == "burn":
        burn(args.seconds, args.log)
    elif args.workload == "starved":
        starved(args.healthy_seconds, args.starved_seconds, args.log)
    elif args.workload == "copy":
        copy(args.seconds, args.log)
    elif args.workload == "transfer":
        transfer(args.resident_seconds, args.transfer_seconds, args.log)
    else:
        lockstep(args.seconds, args.step_seconds, args.slow, args.log)


if __name__ == "__main__":
    main()
