"""HTTPS/WSS: orchestrator.tls's self-signed pair and its checks, and the orchestrator
serving TLS (one process and several workers), or refusing a bad pair before it binds."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path

import httpx
import pytest
import websockets
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from devkit.processes import start_service
from devkit.realtime_client import RealtimeTestClient
from orchestrator.tls import DEFAULT_DAYS, CertInfo, TlsError, check_pair, self_signed
from tests.conftest import Stack
from tests.tls_pairs import write_pair

ROOT = Path(__file__).resolve().parents[2]


def python_m(module: str, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    """`python -m module args` as a user runs it; its exit code and output."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def lines(stdout: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in stdout.splitlines())


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> CertInfo:
    return self_signed(tmp_path_factory.mktemp("tls"), ["node01.cluster.example", "10.1.2.3"])


@pytest.fixture
def bad_pairs(tmp_path: Path, pair: CertInfo) -> dict[str, tuple[Path, Path]]:
    """Pairs the server cannot use, by name, each with the error message it must get."""
    now = datetime.now(UTC)
    other = self_signed(tmp_path / "other", ["elsewhere"])
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(
        serialization.load_pem_private_key(pair.key.read_bytes(), None).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    return {
        "does not match the key": (pair.cert, other.key),
        "expired on": write_pair(tmp_path / "expired", now - timedelta(days=10), now - timedelta(days=1)),
        "is not valid before": write_pair(
            tmp_path / "future", now + timedelta(days=1), now + timedelta(days=10)
        ),
        "cannot read the certificate": (tmp_path / "missing.pem", pair.key),
        "cannot read the key": (pair.cert, tmp_path / "missing.pem"),
        "is not a PEM certificate": (pair.key, pair.key),
        "is not a PEM private key": (pair.cert, pair.cert),
        "is encrypted": (pair.cert, encrypted),
    }


def test_a_self_signed_pair_names_every_host_and_loopback(pair: CertInfo) -> None:
    certificate = x509.load_pem_x509_certificate(pair.cert.read_bytes())
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"node01.cluster.example", "localhost"}
    assert set(san.get_values_for_type(x509.IPAddress)) == {ip_address("10.1.2.3"), ip_address("127.0.0.1")}
    assert not certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert pair.key.stat().st_mode & 0o777 == 0o600
    assert pair.not_after - datetime.now(UTC) > timedelta(days=DEFAULT_DAYS - 1)
    # The fingerprint browsers show: SHA-256 of the DER certificate, as the ssl module reads it.
    der = ssl.PEM_cert_to_DER_cert(pair.cert.read_text())
    assert pair.fingerprint_sha256 == certificate.fingerprint(hashes.SHA256()).hex(":").upper()
    assert pair.fingerprint_sha256.replace(":", "").lower() == hashlib.sha256(der).hexdigest()
    assert check_pair(pair.cert, pair.key) == pair


@pytest.mark.parametrize("host", ["", "two words"])
def test_a_blank_host_is_refused(tmp_path: Path, host: str) -> None:
    with pytest.raises(TlsError, match="not a host name or address"):
        self_signed(tmp_path, [host])


def test_every_bad_pair_is_refused_in_one_clear_line(bad_pairs: dict[str, tuple[Path, Path]]) -> None:
    for reason, (cert, key) in bad_pairs.items():
        with pytest.raises(TlsError) as caught:
            check_pair(cert, key)
        assert reason in str(caught.value), (reason, caught.value)
        assert "\n" not in str(caught.value)


def test_the_cli_makes_and_checks_a_pair_in_name_value_lines(tmp_path: Path) -> None:
    made = python_m(
        "orchestrator.tls", "self-signed", "--dir", str(tmp_path), "--host", "node7", "--host", "::1"
    )
    assert made.returncode == 0, made.stderr
    info = lines(made.stdout)
    assert info["cert"] == str(tmp_path / "cert.pem") and info["key"] == str(tmp_path / "key.pem")
    checked = python_m("orchestrator.tls", "check", "--cert", info["cert"], "--key", info["key"])
    assert checked.returncode == 0, checked.stderr
    assert lines(checked.stdout) == info
    certificate = x509.load_pem_x509_certificate((tmp_path / "cert.pem").read_bytes())
    assert info["fingerprint_sha256"] == certificate.fingerprint(hashes.SHA256()).hex(":").upper()
    assert set(info) == {"cert", "key", "fingerprint_sha256", "spki_sha256", "not_after"}


def test_the_cli_check_fails_with_one_line_on_stderr(bad_pairs: dict[str, tuple[Path, Path]]) -> None:
    cert, key = bad_pairs["expired on"]
    result = python_m("orchestrator.tls", "check", "--cert", str(cert), "--key", str(key))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("python -m orchestrator.tls: the certificate ")
    assert "expired on" in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("case", "flags"),
    [
        ("does not match the key", None),
        ("expired on", None),
        ("cannot read the certificate", None),
        ("set both", ["--tls-cert", "{cert}"]),
        ("set both", ["--tls-key", "{key}"]),
    ],
)
def test_the_orchestrator_refuses_a_bad_pair_before_it_binds(
    bad_pairs: dict[str, tuple[Path, Path]],
    pair: CertInfo,
    tmp_path: Path,
    case: str,
    flags: list[str] | None,
) -> None:
    cert, key = bad_pairs.get(case, (pair.cert, pair.key))
    args = [f.format(cert=cert, key=key) for f in flags or ["--tls-cert", "{cert}", "--tls-key", "{key}"]]
    # The port is taken: an orchestrator that got as far as binding would fail on that instead.
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        result = python_m("orchestrator", *args, "--port", port, cwd=tmp_path, env={"LLM_URL": "echo"})
    assert result.returncode != 0
    assert result.stderr.startswith("python -m orchestrator: bad TLS certificate: "), result.stderr
    assert case in result.stderr
    assert "address already in use" not in result.stderr.lower()


@contextlib.contextmanager
def serving_tls(
    stack: Stack, pair: CertInfo, workdir: Path, *flags: str, timeout_s: float = 120.0
) -> Iterator[int]:
    """Another orchestrator in front of `stack`'s backends, serving HTTPS/WSS with `pair`
    (`flags`: more of its flags), until /ready answers over TLS; yields its port."""
    env = {
        "STT_PORT": str(stack.stt.port),
        "TTS_PORT": str(stack.tts.port),
        "LLM_URL": f"{stack.llm.http}/v1",
        "ACCESS_TOKEN": stack.token,
        "ORCHESTRATOR_TLS_CERT_FILE": str(pair.cert),
        "ORCHESTRATOR_TLS_KEY_FILE": str(pair.key),
    }
    with start_service(
        "orchestrator", list(flags), stack.stt.api_key, workdir, env=env, timeout_s=timeout_s, scheme="https"
    ) as orchestrator:
        yield orchestrator.port


def trusting(pair: CertInfo) -> ssl.SSLContext:
    """A client context that trusts `pair`'s certificate alone, checking names as browsers do."""
    return ssl.create_default_context(cafile=pair.cert)


@pytest.mark.lite
@pytest.mark.parametrize("workers", ["1", "2"])
async def test_a_valid_pair_serves_https_and_a_wss_realtime_session(
    lite_stack: Stack, pair: CertInfo, tmp_path: Path, workers: str
) -> None:
    with serving_tls(lite_stack, pair, tmp_path, "--workers", workers) as port:
        async with httpx.AsyncClient(verify=trusting(pair)) as http:
            assert (await http.get(f"https://127.0.0.1:{port}/health")).status_code == 200
            # Plain HTTP on the TLS port gets no answer.
            with pytest.raises(httpx.HTTPError):
                await http.get(f"http://127.0.0.1:{port}/health")
        ws = await websockets.connect(
            f"wss://127.0.0.1:{port}/v1/realtime",
            ssl=trusting(pair),
            additional_headers={"Authorization": f"Bearer {lite_stack.token}"},
        )
        client = RealtimeTestClient(ws)
        try:
            created = await client.wait_type("session.created")
            assert created["session"]["type"] == "realtime"
        finally:
            await ws.close()


@pytest.mark.lite
def test_the_healthcheck_probes_the_orchestrator_over_https_when_it_has_a_certificate(
    lite_stack: Stack, pair: CertInfo, tmp_path: Path
) -> None:
    with serving_tls(lite_stack, pair, tmp_path) as port:
        https = {"ORCHESTRATOR_PORT": str(port), "ORCHESTRATOR_TLS_CERT_FILE": str(pair.cert)}
        ready = python_m("kit.healthcheck", "--service", "orchestrator", env=https)
        assert (ready.returncode, ready.stdout) == (0, "ready\n"), ready
        without = python_m(
            "kit.healthcheck", "--service", "orchestrator", env={"ORCHESTRATOR_PORT": str(port)}
        )
        assert without.returncode == 1 and without.stdout.startswith("not ready: unreachable")
    # Plain HTTP, as every other caller uses it, is unchanged.
    http = {"ORCHESTRATOR_PORT": str(lite_stack.orchestrator.port), "ORCHESTRATOR_TLS_CERT_FILE": ""}
    ready = python_m("kit.healthcheck", "--service", "orchestrator", env=http)
    assert (ready.returncode, ready.stdout) == (0, "ready\n"), ready


@pytest.mark.lite
async def test_self_signed_mode_makes_a_certificate_at_start_and_prints_its_fingerprint(
    lite_stack: Stack, tmp_path: Path
) -> None:
    """ORCHESTRATOR_TLS=self-signed (compose's way): no files given, the fingerprint is printed."""
    env = {
        "STT_PORT": str(lite_stack.stt.port),
        "TTS_PORT": str(lite_stack.tts.port),
        "LLM_URL": "echo",
        "ORCHESTRATOR_TLS": "self-signed",
        "ORCHESTRATOR_TLS_HOSTS": "workstation.lab.example,10.9.8.7",
    }
    with start_service(
        "orchestrator", [], lite_stack.stt.api_key, tmp_path, env=env, scheme="https"
    ) as server:
        printed = re.search(r"SHA-256 fingerprint ([0-9A-F:]{95})", server.log_text())
        assert printed, server.log_text()[-2000:]
        served = ssl.get_server_certificate(("127.0.0.1", server.port))
        der = ssl.PEM_cert_to_DER_cert(served)
        digest = hashlib.sha256(der).hexdigest().upper()
        assert printed.group(1) == ":".join(digest[i : i + 2] for i in range(0, 64, 2))
        names = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
        assert "workstation.lab.example" in names.value.get_values_for_type(x509.DNSName)
        assert ip_address("10.9.8.7") in names.value.get_values_for_type(x509.IPAddress)
        # The image's healthcheck probes it over https from the same settings.
        assert (
            python_m(
                "kit.healthcheck",
                "--service",
                "orchestrator",
                env={"ORCHESTRATOR_PORT": str(server.port), "ORCHESTRATOR_TLS": "self-signed"},
            ).returncode
            == 0
        )


def test_a_replica_host_that_does_not_resolve_stops_the_orchestrator_at_start(tmp_path: Path) -> None:
    result = python_m(
        "orchestrator",
        cwd=tmp_path,
        env={
            "SERVICE_API_KEY": "k",
            "LLM_URL": "echo",
            "STT_URLS": "ws://127.0.0.1:9,ws://no-such-node.invalid:3001",
        },
    )
    assert result.returncode != 0
    assert "these backends' hosts do not resolve: ws://no-such-node.invalid:3001" in result.stderr
