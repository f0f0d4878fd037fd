"""Mutual TLS: `ironsight certs`, a node may only write its own data, plaintext only where asked for,
/metrics behind client certificates, and no secret in any log or error."""

from __future__ import annotations

import os
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import grpc
import pytest

from ironsight.core.transport import Tls, channel
from ironsight.v1 import telemetry_pb2 as pb
from ironsight.v1 import telemetry_pb2_grpc as pb_grpc

from support.batches import one_batch
from support.processes import BIN, CollectorProcess, free_port, run_cli


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    d = tmp_path / "pki"
    run_cli("certs", "init", "--dir", str(d))
    run_cli("certs", "collector", "localhost", "--ip", "127.0.0.1", "--dir", str(d))
    run_cli("certs", "issue", "gpu-01", "--dir", str(d))
    run_cli("certs", "issue", "alice", "--reader", "--dir", str(d))
    return d


def tls(pki: Path, name: str) -> Tls:
    return Tls(pki / "ca.pem", pki / f"{name}.pem", pki / f"{name}.key")


def tls_flags(pki: Path, name: str) -> list[str]:
    return [
        "--tls-ca",
        str(pki / "ca.pem"),
        "--tls-cert",
        str(pki / f"{name}.pem"),
        "--tls-key",
        str(pki / f"{name}.key"),
    ]


@pytest.mark.slow
def test_certs_are_made_with_names_and_private_keys(pki: Path) -> None:
    assert oct((pki / "ca.key").stat().st_mode & 0o777) == "0o600"
    assert oct((pki / "gpu-01.key").stat().st_mode & 0o777) == "0o600"
    text = subprocess.run(
        ["openssl", "x509", "-in", str(pki / "collector.pem"), "-noout", "-ext", "subjectAltName"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "DNS:localhost" in text and "IP Address:127.0.0.1" in text
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(pki / "ca.pem"), str(pki / "gpu-01.pem")],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stderr
    again = run_cli("certs", "issue", "gpu-01", "--dir", str(pki), check=False)
    assert again.returncode == 1 and "exists; remove it first" in again.stderr
    bad = run_cli("certs", "issue", "bad name", "--dir", str(pki), check=False)
    assert bad.returncode == 1 and "is not a usable name" in bad.stderr
    none = run_cli("certs", "issue", "x", "--dir", str(pki.parent / "nowhere"), check=False)
    assert none.returncode == 1 and "run `ironsight certs init" in none.stderr


@pytest.mark.slow
def test_a_node_writes_only_its_own_data_over_mutual_tls(pki: Path, tmp_path: Path) -> None:
    c = CollectorProcess(
        tmp_path / "t.duckdb", tmp_path / "c.log", tls_flags(pki, "collector"), http=True
    ).start()
    try:
        with channel(c.target, tls(pki, "gpu-01")) as ch:
            stub = pb_grpc.IngestStub(ch)
            acks = list(stub.Stream(iter([one_batch(1, "gpu-01")]), timeout=20))
            assert [a.status for a in acks] == [pb.Ack.STORED]
            with pytest.raises(grpc.RpcError) as err:
                list(stub.Stream(iter([one_batch(2, "gpu-02")]), timeout=20))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "for node 'gpu-02', but the sender's certificate names gpu-01" in (err.value.details() or "")
        # The CLI with a user's certificate reads everything; nothing of gpu-02 was stored.
        out = run_cli("--collector", c.target, *tls_flags(pki, "alice"), "--format", "csv", "query",
                      "SELECT node, count(*) AS n FROM load GROUP BY node")  # fmt: skip
        assert out.stdout.split() == ["node,n", "gpu-01,1"]
        # Least privilege: a node's certificate may not read the fleet, a reader's may not send data.
        node_reads = run_cli("--collector", c.target, *tls_flags(pki, "gpu-01"), "nodes", check=False)
        assert node_reads.returncode == 1
        assert "certificate (gpu-01) is a node's" in node_reads.stderr and "--reader" in node_reads.stderr
        node_names = run_cli("--collector", c.target, *tls_flags(pki, "gpu-01"), "jobs", "name", "mine",
                             "--node", "gpu-01", "--since", "1h", check=False)  # fmt: skip
        assert node_names.returncode == 1 and "certificate (gpu-01) is a node's" in node_names.stderr
        doctor = run_cli("--collector", c.target, *tls_flags(pki, "gpu-01"), "doctor", "--state-dir", str(tmp_path),
                         check=False).stdout  # fmt: skip
        [offset] = [line for line in doctor.splitlines() if "clock offset" in line]
        assert (
            offset.startswith("OK") and "measured by the collector" in offset
        )  # a node may not ask its time
        with channel(c.target, tls(pki, "alice")) as ch, pytest.raises(grpc.RpcError) as err:
            list(pb_grpc.IngestStub(ch).Stream(iter([one_batch(4, "alice")]), timeout=20))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "certificate (alice) is a reader's" in (err.value.details() or "")
        # Plaintext, or a certificate from another CA, gets nowhere.
        plain = run_cli("--collector", c.target, "nodes", check=False)
        assert plain.returncode == 1 and "Traceback" not in plain.stderr
        other = tmp_path / "other"
        run_cli("certs", "init", "--dir", str(other))
        run_cli("certs", "issue", "gpu-01", "--dir", str(other))
        with channel(c.target, tls(other, "gpu-01")) as ch, pytest.raises(grpc.RpcError) as err:
            list(pb_grpc.IngestStub(ch).Stream(iter([one_batch(3, "gpu-01")]), timeout=10))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        # /metrics: HTTPS, for scrapers with a certificate from the CA only.
        ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        url = f"https://127.0.0.1:{c.http_port}/metrics"
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionResetError)) as refused:
            urllib.request.urlopen(url, context=ctx, timeout=10).read()
        assert "CERTIFICATE_VERIFY_FAILED" not in str(refused.value)  # refused for want of a client cert
        ctx.load_cert_chain(str(pki / "alice.pem"), str(pki / "alice.key"))
        body = urllib.request.urlopen(url, context=ctx, timeout=10).read().decode()
        assert 'ironsight_collector_batches_total{outcome="rejected",reason="identity"} 2.0' in body
    finally:
        assert c.stop() == 0


@pytest.mark.slow
def test_an_agent_streams_with_its_certificate(pki: Path, tmp_path: Path) -> None:
    c = CollectorProcess(tmp_path / "a.duckdb", tmp_path / "c.log", tls_flags(pki, "collector")).start()
    log = open(tmp_path / "agent.log", "ab")  # noqa: SIM115
    agent = subprocess.Popen(
        [str(BIN / "ironsight-agent"), "--collector", f"localhost:{c.port}", "--node-id", "gpu-01",
         "--no-collector.gpu", *tls_flags(pki, "gpu-01")],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        rows = ""
        while time.monotonic() < deadline:
            rows = run_cli("--collector", c.target, *tls_flags(pki, "alice"), "--format", "csv", "query",
                           "SELECT count(*) FROM load WHERE node = 'gpu-01'").stdout  # fmt: skip
            if rows.split()[-1] != "0":
                break
            time.sleep(0.5)
        assert int(rows.split()[-1]) > 0
    finally:
        agent.terminate()
        agent.wait(timeout=30)
        log.close()
        c.stop()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ironsight-collector", "--listen", "127.0.0.1:0"], "needs TLS (--tls-ca, --tls-cert, --tls-key"),
        (["ironsight-collector", "--listen", "0.0.0.0:7070", "--insecure"], "would be open to the network"),
        (["ironsight-collector", "--insecure", "--http-listen", "0.0.0.0:9470"], "/metrics on 0.0.0.0:9470"),
        (["ironsight-collector", "--tls-ca", "/nonexistent"], "TLS needs all three"),
        (["ironsight-agent", "--collector", "10.1.2.3:7070"], "is not on this machine"),
        (["ironsight-agent", "--metrics-listen", "0.0.0.0:9471"], "would be open to the network"),
        (["ironsight-agent", "--collector", "10.1.2.3:7070", "--tls-ca", "/x", "--tls-cert", "/y", "--tls-key", "/z"],
         "cannot read TLS CA /x"),
    ],
)  # fmt: skip
def test_plaintext_only_where_asked_for(tmp_path: Path, argv: list[str], message: str) -> None:
    proc = subprocess.run(
        [str(BIN / argv[0]), *argv[1:], *(["--db", str(tmp_path / "x.duckdb")] if "collector" in argv[0] else [])],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()[-1]) > 0 and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.duckdb").exists()


@pytest.mark.slow
def test_plaintext_on_the_network_when_told_twice(tmp_path: Path) -> None:
    port = free_port()
    c = subprocess.Popen(
        [str(BIN / "ironsight-collector"), "--db", str(tmp_path / "r.duckdb"), "--listen", f"0.0.0.0:{port}",
         "--insecure", "--allow-remote-insecure"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        from support.processes import wait_port

        wait_port(port, c)
    finally:
        c.terminate()
        out = c.communicate(timeout=30)[0].decode()
    assert c.returncode == 0, out


@pytest.mark.slow
def test_no_secret_reaches_a_log_or_an_error(pki: Path, tmp_path: Path) -> None:
    secret = "hunter2-very-secret"
    (tmp_path / "pw").write_text(secret)
    (tmp_path / "token").write_text(secret)
    key_line = (pki / "ca.key").read_text().splitlines()[1]
    c = CollectorProcess(
        tmp_path / "s.duckdb", tmp_path / "c.log",
        ["--remote-write-url", "https://127.0.0.1:9/write", "--remote-write-username", "u",
         "--remote-write-password-file", str(tmp_path / "pw"), "--remote-write-ca-file", str(pki / "ca.pem"),
         *tls_flags(pki, "collector"), "--log-level", "debug"],
    ).start()  # fmt: skip
    try:
        with channel(c.target, tls(pki, "gpu-01")) as ch:
            list(pb_grpc.IngestStub(ch).Stream(iter([one_batch(1, "gpu-01")]), timeout=20))
        time.sleep(1)  # remote write fails (nothing on port 9) and logs it
    finally:
        c.stop()
    both = subprocess.run(
        [str(BIN / "ironsight-collector"), "--remote-write-url", "http://h/w", "--remote-write-bearer-token-file",
         str(tmp_path / "token"), "--remote-write-username", "u", "--remote-write-password-file", str(tmp_path / "pw")],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    (pki / "broken.key").write_text("-----BEGIN PRIVATE KEY-----\n" + key_line + "\n")
    broken = run_cli("--collector", "127.0.0.1:1", "--tls-ca", str(pki / "ca.pem"), "--tls-cert",
                     str(pki / "alice.pem"), "--tls-key", str(pki / "broken.key"), "nodes", check=False)  # fmt: skip
    helps = [subprocess.run([str(BIN / exe), "--help"], capture_output=True, text=True).stdout
             for exe in ("ironsight-collector", "ironsight-agent")]  # fmt: skip
    texts = [(tmp_path / "c.log").read_text(), both.stderr, broken.stderr, *helps]
    assert "remote write failing" in texts[0]
    for text in texts:
        assert secret not in text and key_line not in text
    assert os.stat(pki / "ca.key").st_mode & 0o077 == 0


@pytest.mark.slow
def test_agent_metrics_over_https_for_certificate_holders(pki: Path, tmp_path: Path) -> None:
    run_cli("certs", "issue", "gpu-02", "--ip", "127.0.0.1", "--dir", str(pki))  # scraped at that address
    port = free_port()
    agent = subprocess.Popen(
        [str(BIN / "ironsight-agent"), "--metrics-listen", f"127.0.0.1:{port}", "--no-collector.gpu",
         *tls_flags(pki, "gpu-02")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        from support.processes import wait_port

        wait_port(port, agent)
        url = f"https://127.0.0.1:{port}/metrics"
        ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionResetError)) as refused:
            urllib.request.urlopen(url, context=ctx, timeout=10).read()
        assert "CERTIFICATE_VERIFY_FAILED" not in str(refused.value)  # refused for want of a client cert
        ctx.load_cert_chain(str(pki / "alice.pem"), str(pki / "alice.key"))
        deadline = time.monotonic() + 20
        body = ""
        while "node_load1" not in body and time.monotonic() < deadline:
            body = urllib.request.urlopen(url, context=ctx, timeout=10).read().decode()
            time.sleep(0.2)
        assert "node_load1" in body and "ironsight_agent_ticks_total" in body
    finally:
        agent.terminate()
        agent.wait(timeout=30)
