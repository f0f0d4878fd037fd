"""`ironsight doctor`: OK / WARN / FAIL with a fix, on this VM, on fixture trees, with TLS files and a
collector; exit status 1 on any FAIL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ironsight.cli.checks import FAIL, OK, WARN, Setup, clock, nvml, run, sampler_paths, tls

from support.nvml_double import H100, CaptureNvml, capture
from support.processes import CollectorProcess, run_cli


def by_name(checks: list) -> dict[str, tuple[str, str]]:  # type: ignore[type-arg]
    return {c.name: (c.status, c.detail) for c in checks}


def test_this_vm_has_no_gpu_and_that_is_a_warning(tmp_path: Path) -> None:
    out = run_cli("doctor", "--state-dir", str(tmp_path))
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert any(line.startswith("WARN") and "nvml" in line and "no NVIDIA GPU here" in line for line in lines)
    assert any(line.startswith("OK") and "clock" in line for line in lines)
    assert lines[-1].endswith("0 failed, 1 warnings")


def test_gpus_through_the_nvml_double_and_devices_without_a_library(tmp_path: Path) -> None:
    [ok] = nvml(Setup(nvml=CaptureNvml(capture(H100), "load"), dev=tmp_path))
    assert ok.status == OK and "1 GPU(s)" in ok.detail and "driver" in ok.detail
    (tmp_path / "nvidia0").write_text("")  # a device node where NVML cannot be loaded: the library is missing
    (tmp_path / "nvidiactl").write_text("")
    [broken] = nvml(Setup(dev=tmp_path))
    assert broken.status == FAIL and "nvidia0" in broken.detail and "libnvidia-ml" in broken.fix


def test_fixture_trees_and_a_missing_proc(node_exporter_tree: Path, tmp_path: Path) -> None:
    checks = by_name(
        sampler_paths(Setup(procfs=node_exporter_tree / "proc", sysfs=node_exporter_tree / "sys"))
    )
    assert checks["sampler cpu"][0] == OK and checks["rdma devices"][0] == OK
    assert "2 under" in checks["rdma devices"][1]  # mlx4_0 and mlx5_0 in node_exporter's tree
    (tmp_path / "proc").mkdir()
    (tmp_path / "sys" / "class" / "net" / "eth0").mkdir(parents=True)
    empty = by_name(sampler_paths(Setup(procfs=tmp_path / "proc", sysfs=tmp_path / "sys")))
    assert empty["sampler cpu"][0] == FAIL and empty["sampler pressure"][0] == WARN
    out = run_cli("doctor", "--path.procfs", str(tmp_path / "proc"), "--path.sysfs", str(tmp_path / "sys"),
                  "--state-dir", str(tmp_path), check=False)  # fmt: skip
    assert out.returncode == 1 and "fix: point --path.procfs at a mounted /proc" in out.stdout
    assert clock(Setup())[0].status == OK


def cert(path: Path, days: float) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    now = dt.datetime.now(dt.UTC)
    c = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now - dt.timedelta(days=400))
        .not_valid_after(now + dt.timedelta(days=days)).sign(key, hashes.SHA256())
    )  # fmt: skip
    path.write_bytes(c.public_bytes(serialization.Encoding.PEM))
    return path


def test_tls_files_expired_expiring_unreadable(tmp_path: Path) -> None:
    checks = tls(Setup(tls_files=(cert(tmp_path / "old.pem", -1), cert(tmp_path / "soon.pem", 10),
                                  cert(tmp_path / "good.pem", 300), tmp_path / "gone.pem")))  # fmt: skip
    got = by_name(checks)
    assert got["tls old.pem"][0] == FAIL and "expired" in got["tls old.pem"][1]
    assert got["tls soon.pem"][0] == WARN and "expires in" in got["tls soon.pem"][1]
    assert got["tls good.pem"][0] == OK
    assert got["tls gone.pem"][0] == FAIL and "cannot read" in got["tls gone.pem"][1]


@pytest.mark.slow
def test_collector_reachable_or_not_and_disk_space(tmp_path: Path) -> None:
    c = CollectorProcess(tmp_path / "d.duckdb", tmp_path / "c.log").start()
    try:
        got = by_name(run(Setup(collector=c.target, state_dir=tmp_path, need_bytes=1 << 20)))
        assert got["collector"][0] == OK and "serving" in got["collector"][1]
        assert got["clock offset"][0] == OK and "the collector's clock" in got["clock offset"][1]
        assert got["disk"][0] == OK
    finally:
        c.stop()
    out = run_cli("--collector", c.target, "doctor", "--state-dir", str(tmp_path), "--need-mb", "100000000",
                  check=False)  # fmt: skip
    assert out.returncode == 1
    lines = [line for line in out.stdout.splitlines() if line.startswith("FAIL")]
    assert any("collector" in line and "UNAVAILABLE" in line for line in lines)
    assert any("disk" in line and "want 100000000 MiB" in line for line in lines)


def test_device_access_for_the_service_user(tmp_path: Path) -> None:
    import os
    import stat as st

    from ironsight.cli.checks import devices

    dev = tmp_path / "dev"
    dev.mkdir()
    node = dev / "nvidia0"
    os.mknod(node, st.S_IFCHR | 0o660, os.makedev(195, 0))  # root:root rw-rw----, as on a badly set up server
    [closed] = devices(Setup(dev=dev, user="nobody"))
    assert closed.status == FAIL and "not readable and writable by user nobody: nvidia0" in closed.detail
    node.chmod(0o666)
    (dev / "nvidia-caps").mkdir()  # a folder beside the devices on a real H200 machine: not one of them
    os.mknod(dev / "nvidiactl", st.S_IFCHR | 0o666, os.makedev(195, 255))
    (dev / "nvidiactl").chmod(0o666)  # past the umask
    [opened] = devices(Setup(dev=dev, user="nobody"))
    assert opened.status == OK
    assert opened.detail == "2 device files usable by user nobody: nvidia0 crw-rw-rw-, nvidiactl crw-rw-rw-"
    [unknown] = devices(Setup(dev=dev, user="no-such-user-here"))
    assert unknown.status == FAIL and "no user 'no-such-user-here'" in unknown.detail


def test_refused_batches_in_the_quarantine_are_a_warning(tmp_path: Path) -> None:
    from ironsight.agent.quarantine import Quarantine

    assert by_name(run(Setup(state_dir=tmp_path)))["quarantine"][0] == OK
    Quarantine(tmp_path / "quarantine" / "gpu-01").keep(
        7, b"batch bytes", "time", "time_ns outside the window"
    )
    status, detail = by_name(run(Setup(state_dir=tmp_path)))["quarantine"][:2]
    assert status == WARN and "1 batches" in detail and "gpu-01" in detail
