"""`ironsight doctor`: what usually goes wrong on a new server, each check with OK / WARN / FAIL and the fix.

Checks are plain functions returning Check rows; the command prints them and
exits 1 when any failed. They read the same paths and files the services do,
so a fixture tree or a test PKI can stand in for a real machine.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OK, WARN, FAIL = "OK", "WARN", "FAIL"


@dataclass(frozen=True)
class Check:
    status: str
    name: str
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class Setup:
    procfs: Path = Path("/proc")
    sysfs: Path = Path("/sys")
    dev: Path = Path("/dev")
    state_dir: Path | None = None  # the agent's spool or the collector's database folder
    need_bytes: int = 256 << 20
    tls_files: tuple[Path, ...] = ()
    collector: str | None = None
    nvml: Any = None  # a pynvml-like module (tests); None imports pynvml
    user: str | None = None  # whose access to /dev/nvidia* to check (the service's); None: this process


def nvml(setup: Setup) -> list[Check]:
    from ironsight.agent.nvml import Nvml, NvmlUnavailable

    devices = sorted(p.name for p in setup.dev.glob("nvidia[0-9]*"))
    driver_loaded = (setup.procfs / "driver" / "nvidia" / "version").exists() or bool(devices)
    n = Nvml(setup.nvml)
    try:
        n.init()
    except NvmlUnavailable as exc:
        if driver_loaded:
            return [Check(FAIL, "nvml", f"NVIDIA devices present ({', '.join(devices) or 'driver loaded'}) but {exc}",
                          "install the driver's NVML library (libnvidia-ml.so.1) matching the kernel module")]  # fmt: skip
        return [Check(WARN, "nvml", f"no NVIDIA GPU here ({exc})", "nothing to do on a machine without GPUs")]
    count = n.call("nvmlDeviceGetCount") or 0
    version = n.call("nvmlSystemGetDriverVersion") or "?"
    version = version.decode() if isinstance(version, bytes) else str(version)
    out = [Check(OK if count else WARN, "nvml", f"driver {version}, {count} GPU(s)",
                 "" if count else "NVML sees no GPU: check `nvidia-smi`")]  # fmt: skip
    n.shutdown()
    return out


def can_read_write(path: Path, user: str | None) -> bool:
    if user is None:
        return os.access(path, os.R_OK | os.W_OK)
    import grp
    import pwd

    pw = pwd.getpwnam(user)
    groups = {pw.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    st = path.stat()
    if st.st_uid == pw.pw_uid:
        need = stat.S_IRUSR | stat.S_IWUSR
    elif st.st_gid in groups:
        need = stat.S_IRGRP | stat.S_IWGRP
    else:
        need = stat.S_IROTH | stat.S_IWOTH
    return st.st_mode & need == need


def devices(setup: Setup) -> list[Check]:
    # Device nodes only: a real H200 machine also has /dev/nvidia-caps, a folder.
    nodes = sorted(p for p in setup.dev.glob("nvidia*") if p.is_char_device())
    if not nodes:
        return []
    who = f"user {setup.user}" if setup.user else f"uid {os.getuid()}"
    try:
        closed = [p.name for p in nodes if not can_read_write(p, setup.user)]
    except KeyError:
        return [
            Check(
                FAIL,
                "gpu devices",
                f"no user {setup.user!r} here",
                "create it: systemd-sysusers (docs/operations.md)",
            )
        ]
    if closed:
        return [Check(FAIL, "gpu devices", f"not readable and writable by {who}: {', '.join(closed)}",
                      "the unit allows them with DeviceAllow=; elsewhere add the user to the devices' group")]  # fmt: skip
    modes = ", ".join(f"{p.name} {stat.filemode(p.stat().st_mode)}" for p in nodes[:4])
    more = f", {len(nodes) - 4} more" if len(nodes) > 4 else ""
    return [Check(OK, "gpu devices", f"{len(nodes)} device files usable by {who}: {modes}{more}")]


SAMPLER_PATHS = {
    "cpu": ["stat", "loadavg"],
    "memory": ["meminfo"],
    "disk": ["diskstats"],
    "pressure": ["pressure/cpu"],
    "nic": ["net/dev"],
}
SYS_PATHS = {"nic": "class/net", "rdma": "class/infiniband", "hwmon": "class/hwmon"}


def sampler_paths(setup: Setup) -> list[Check]:
    out = []
    for sampler, rels in SAMPLER_PATHS.items():
        missing = [str(setup.procfs / r) for r in rels if not (setup.procfs / r).exists()]
        if not missing:
            out.append(Check(OK, f"sampler {sampler}", "its files are there"))
        elif sampler == "pressure":
            out.append(Check(WARN, "sampler pressure", f"missing {missing[0]}: no PSI in this kernel",
                             "boot with psi=1 (CONFIG_PSI) for stall figures; the rest works without"))  # fmt: skip
        else:
            out.append(Check(FAIL, f"sampler {sampler}", f"missing {', '.join(missing)}",
                             "point --path.procfs at a mounted /proc (in a container: the host's)"))  # fmt: skip
    for sampler, rel in SYS_PATHS.items():
        path = setup.sysfs / rel
        found = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
        if found:
            out.append(Check(OK, f"{sampler} devices", f"{len(found)} under {path}"))
        elif sampler == "nic":
            out.append(
                Check(FAIL, "nic devices", f"nothing under {path}", "point --path.sysfs at a mounted /sys")
            )
        else:
            out.append(Check(OK, f"{sampler} devices", f"none on this machine ({path}): nothing to sample"))
    return out


def clock(setup: Setup) -> list[Check]:
    now = dt.datetime.now(dt.UTC)
    if now.year < 2025:
        return [
            Check(
                FAIL,
                "clock",
                f"the clock says {now:%Y-%m-%d}",
                "enable time sync (chrony, systemd-timesyncd)",
            )
        ]
    return [Check(OK, "clock", f"{now:%Y-%m-%d %H:%M:%S} UTC")]


def tls(setup: Setup) -> list[Check]:
    from cryptography import x509

    out = []
    now = dt.datetime.now(dt.UTC)
    for path in setup.tls_files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            out.append(Check(FAIL, f"tls {path.name}", f"cannot read {path}: {exc.strerror or exc}",
                             "fix the path or its permissions (the service user must read it)"))  # fmt: skip
            continue
        if b"PRIVATE KEY" in data:
            mode = path.stat().st_mode & 0o777
            status = WARN if mode & 0o007 else OK
            out.append(Check(status, f"tls {path.name}", f"private key, mode {mode:o}",
                             "chmod o-rwx" if status == WARN else ""))  # fmt: skip
            continue
        try:
            cert = x509.load_pem_x509_certificate(data)
        except ValueError:
            out.append(Check(FAIL, f"tls {path.name}", "not a PEM certificate", "give the .pem, not the key"))
            continue
        left = cert.not_valid_after_utc - now
        if left.total_seconds() <= 0:
            out.append(Check(FAIL, f"tls {path.name}", f"expired {cert.not_valid_after_utc:%Y-%m-%d}",
                             "issue a new one: ironsight certs issue NODE (remove the old pair first)"))  # fmt: skip
        elif left < dt.timedelta(days=30):
            out.append(
                Check(WARN, f"tls {path.name}", f"expires in {left.days} days", "issue a new one soon")
            )
        else:
            out.append(Check(OK, f"tls {path.name}", f"valid until {cert.not_valid_after_utc:%Y-%m-%d}"))
    return out


def disk(setup: Setup) -> list[Check]:
    if setup.state_dir is None:
        return []
    path = setup.state_dir
    while not path.exists() and path != path.parent:
        path = path.parent
    free = shutil.disk_usage(path).free
    if free < setup.need_bytes:
        return [Check(FAIL, "disk", f"{free >> 20} MiB free under {setup.state_dir}, want {setup.need_bytes >> 20} MiB",
                      "free space there, or lower --spool-max-bytes")]  # fmt: skip
    return [Check(OK, "disk", f"{free >> 20} MiB free under {setup.state_dir}")]


def quarantine(setup: Setup) -> list[Check]:
    """Batches the collector refused after they were spooled (ironsight.agent.quarantine)."""
    from ironsight.agent.quarantine import LOG_NAME, held

    if setup.state_dir is None:
        return []
    out = []
    for folder in sorted((setup.state_dir / "quarantine").glob("*")):
        batches, size = held(folder)
        if batches:
            out.append(Check(WARN, "quarantine", f"{batches} batches ({size >> 10} KiB) the collector refused, in {folder}",
                             f"see {folder / LOG_NAME} for why; an agent and a collector of different versions?"))  # fmt: skip
    return out or [Check(OK, "quarantine", "no batch refused by the collector")]


def collector(setup: Setup, tls_config: Any = None) -> list[Check]:
    if not setup.collector:
        return []
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from ironsight.core.transport import channel

    began = time.monotonic()
    try:
        with channel(setup.collector, tls_config) as ch:
            reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    except grpc.RpcError as exc:
        return [Check(FAIL, "collector", f"{setup.collector}: {exc.code().name} {exc.details() or ''}".strip(),
                      "is it running and listening there? same CA, and a certificate it trusts?")]  # fmt: skip
    serving = reply.status == health_pb2.HealthCheckResponse.SERVING
    took = (time.monotonic() - began) * 1000
    return [Check(OK if serving else FAIL, "collector", f"{setup.collector} {'serving' if serving else 'not serving'}"
                  f" ({took:.0f} ms)", "" if serving else "see the collector's log (journalctl -u ironsight-collector)"),
            *(clock_offset(setup, tls_config) if serving else [])]  # fmt: skip


def clock_offset(setup: Setup, tls_config: Any = None) -> list[Check]:
    """This machine's clock against the collector's: beyond the collector's tolerance, samples are stored shifted."""
    from ironsight.cli.backend import QueryError, RemoteBackend
    from ironsight.collector.clocks import TOLERANCE_NS

    assert setup.collector is not None
    backend = RemoteBackend(setup.collector, tls_config)
    try:
        before = time.time_ns()
        theirs = int(backend.sql("SELECT epoch_ns(current_timestamp) AS now").column("now")[0].as_py())
        mine = (before + time.time_ns()) // 2
    except QueryError as exc:
        if (
            exc.code == "PERMISSION_DENIED"
        ):  # a node's certificate may not query; the collector measures it anyway
            return [Check(OK, "clock offset", "measured by the collector (ironsight_node_clock_offset_seconds);"
                          " a node's certificate may not ask its time")]  # fmt: skip
        return [Check(WARN, "clock offset", f"could not ask the collector's time: {exc}", "")]
    finally:
        backend.close()
    offset = (theirs - mine) / 1e9  # the collector's clock minus this one's, as the collector measures nodes
    detail = f"{abs(offset):.1f}s {'behind' if offset > 0 else 'ahead of'} the collector's clock"
    if abs(offset) * 1e9 > TOLERANCE_NS:
        return [Check(WARN, "clock offset", detail + ": this node's samples are stored shifted by that",
                      "fix time sync here (chronyc tracking, timedatectl); nothing is lost meanwhile")]  # fmt: skip
    return [Check(OK, "clock offset", detail)]


def run(setup: Setup, tls_config: Any = None) -> list[Check]:
    return [*nvml(setup), *devices(setup), *sampler_paths(setup), *clock(setup), *tls(setup), *disk(setup),
            *quarantine(setup), *collector(setup, tls_config)]  # fmt: skip
