"""A procfs/sysfs tree shaped like a big GPU server, for benchmarks of what grows with the node.

BIG: 192 cpus (2 packages, hyperthreads) with cpufreq and thermal_throttle files, 2
NUMA nodes, 16 NVMe drives, 12 interfaces, 8 InfiniBand HCAs with every counter and
hw_counter file, and 20 hwmon chips with 3 temperature sensors each. HUGE: 1,024
cpus, 8 NUMA nodes, 32 drives, 64 interfaces, 100 hwmon chips. Formats are the
kernel's; values are random but fixed by the seed. Files that do not grow with the
node (meminfo, snmp, netstat, pressure) are copied from this machine's /proc.

    python bench/bignode.py DIR      # writes DIR/proc and DIR/sys
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ironsight.agent.samplers.rdma import HW_COUNTERS, PORT_COUNTERS  # noqa: E402


@dataclass(frozen=True)
class Shape:
    cores: int
    numa_nodes: int
    drives: int
    nics: int
    hcas: int
    chips: int


BIG = Shape(cores=192, numa_nodes=2, drives=16, nics=12, hcas=8, chips=20)
# The largest legal node the agent is held to (tests/system/test_big_node.py): nothing refused, batches small.
HUGE = Shape(cores=1024, numa_nodes=8, drives=32, nics=64, hcas=8, chips=100)


def make_tree(root: Path, seed: int = 0, shape: Shape = BIG) -> Path:
    rng = random.Random(seed)

    def w(rel: str, text: str) -> None:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)

    def nums(n: int, high: int = 10**9) -> str:
        return " ".join(str(rng.randint(1, high)) for _ in range(n))

    stat = [f"cpu  {nums(10, 10**10)}"] + [f"cpu{i} {nums(10, 10**8)}" for i in range(shape.cores)]
    stat += [
        "intr 123456789 " + " ".join("0" for _ in range(1500)),
        "ctxt 98765432",
        "btime 1700000000",
        "processes 123456",
        "procs_running 5",
        "procs_blocked 0",
        "softirq 1234 " + nums(10, 10**6),
    ]
    w("proc/stat", "\n".join(stat) + "\n")
    w("proc/loadavg", "12.50 11.20 10.90 9/3100 123456\n")
    packages, threads = 2, 2
    per_package = shape.cores // packages
    for i in range(shape.cores):
        cpu = f"sys/devices/system/cpu/cpu{i}"
        w(f"{cpu}/cpufreq/scaling_cur_freq", f"{rng.randint(1_500_000, 3_800_000)}\n")
        w(f"{cpu}/cpufreq/scaling_max_freq", "3800000\n")
        w(f"{cpu}/topology/core_id", f"{(i % per_package) // threads}\n")
        w(f"{cpu}/topology/physical_package_id", f"{i // per_package}\n")
        w(f"{cpu}/thermal_throttle/core_throttle_count", f"{rng.randint(0, 9)}\n")
        w(f"{cpu}/thermal_throttle/package_throttle_count", f"{rng.randint(0, 99)}\n")
    for name in ("meminfo", "net/snmp", "net/netstat", "pressure/cpu", "pressure/io", "pressure/memory"):
        source = Path("/proc") / name
        if source.exists():
            w(f"proc/{name}", source.read_text())
    for n in range(shape.numa_nodes):
        fields = ["MemTotal", "MemFree", "MemUsed", "FilePages", "Active", "Inactive", "Dirty", "Shmem"]
        w(
            f"sys/devices/system/node/node{n}/meminfo",
            "".join(f"Node {n} {f}:{rng.randint(10**6, 10**9):>16} kB\n" for f in fields),
        )
    w("proc/diskstats", "".join(f" 259 {i} nvme{i}n1 {nums(17)}\n" for i in range(shape.drives)))
    dev = [
        "Inter-|   Receive                                                |  Transmit",
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed",
    ]
    for i in range(shape.nics):
        dev.append(f"  eth{i}: {nums(16)}")
        for attr, value in (
            ("operstate", "up"),
            ("carrier_changes", "2"),
            ("speed", "200000"),
            ("mtu", "9000"),
        ):
            w(f"sys/class/net/eth{i}/{attr}", f"{value}\n")
    w("proc/net/dev", "\n".join(dev) + "\n")
    for h in range(shape.hcas):
        port = f"sys/class/infiniband/mlx5_{h}/ports/1"
        for name in PORT_COUNTERS:
            w(f"{port}/counters/{name}", f"{rng.randint(1, 10**12)}\n")
        for name in HW_COUNTERS:
            w(f"{port}/hw_counters/{name}", f"{rng.randint(1, 10**6)}\n")
        w(f"{port}/state", "4: ACTIVE\n")
        w(f"{port}/phys_state", "5: LinkUp\n")
        w(f"{port}/rate", "400 Gb/sec (4X NDR)\n")
        w(f"{port}/link_layer", "InfiniBand\n")
    for c in range(shape.chips):
        chip = f"sys/class/hwmon/hwmon{c}"
        w(f"{chip}/name", "nvme\n" if c < shape.drives else "coretemp\n")
        for t in range(1, 4):
            w(f"{chip}/temp{t}_input", f"{rng.randint(30, 80) * 1000}\n")
            w(f"{chip}/temp{t}_label", f"Sensor {t}\n")
            w(f"{chip}/temp{t}_crit", "85000\n")
            w(f"{chip}/temp{t}_max", "80000\n")
    return root


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    print(make_tree(Path(sys.argv[1])))
