"""The orchestrator's HTTPS/WSS certificate: a check of a certificate and its key, and a
self-signed pair for one job.

Browsers give a page the microphone only in a secure context (https, or localhost), so a
user who opens the orchestrator across the cluster network, not through an SSH tunnel,
needs HTTPS. The SLURM job makes a pair per job and prints how to trust it:

    python -m orchestrator.tls self-signed --dir D --host node01 --host 10.1.2.3
    python -m orchestrator.tls check --cert C --key K

Both print ``name=value`` lines (``cert``, ``key``, ``fingerprint_sha256``, ``spki_sha256``,
``not_after``); a bad pair exits 1 with one line on stderr. Standard library and
`cryptography` only, so the job can run it with any Python that has `cryptography`.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import ipaddress
import os
import ssl
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: A job's certificate outlives any job's time limit; it is made anew for each job.
DEFAULT_DAYS = 30
#: Valid from a little before now: the browser's clock may be behind the node's.
CLOCK_SKEW = timedelta(minutes=10)
#: Always in the SAN, so the SSH tunnel's https://localhost:PORT works with the same pair.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1")


class TlsError(ValueError):
    """A certificate or key that cannot serve HTTPS; the message is one line."""


@dataclass(frozen=True)
class CertInfo:
    """A checked certificate/key pair and what a browser or client needs to trust it."""

    cert: Path
    key: Path
    subject: str
    #: SHA-256 of the DER certificate, AA:BB:..., as browsers show it.
    fingerprint_sha256: str
    #: base64 SHA-256 of the public key (SPKI): Chromium's --ignore-certificate-errors-spki-list.
    spki_sha256: str
    not_after: datetime

    def lines(self) -> list[str]:
        """``name=value`` lines for scripts (values have no spaces, except in the paths given)."""
        return [
            f"cert={self.cert}",
            f"key={self.key}",
            f"fingerprint_sha256={self.fingerprint_sha256}",
            f"spki_sha256={self.spki_sha256}",
            f"not_after={self.not_after.strftime('%Y-%m-%dT%H:%M:%SZ')}",
        ]


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TlsError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None


def _spki_der(public_key: PublicKeyTypes) -> bytes:
    der, spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return public_key.public_bytes(der, spki)


def check_pair(cert: Path, key: Path) -> CertInfo:
    """The pair's `CertInfo` if it can serve HTTPS now, else `TlsError` saying why.

    Checked: both files readable PEM, the key unencrypted and the certificate's own
    (public keys compared), the certificate valid now, and OpenSSL loading the pair as
    the server will.
    """
    cert, key = Path(cert), Path(key)
    cert_pem, key_pem = _read(cert, "certificate"), _read(key, "key")
    try:
        # A chain file starts with the server's own certificate.
        certificate = x509.load_pem_x509_certificates(cert_pem)[0]
    except ValueError:
        raise TlsError(f"the certificate {cert} is not a PEM certificate") from None
    try:
        private_key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise TlsError(f"the key {key} is encrypted; the server needs it without a passphrase") from None
    except (ValueError, UnsupportedAlgorithm):
        raise TlsError(f"the key {key} is not a PEM private key") from None
    spki = _spki_der(certificate.public_key())
    if spki != _spki_der(private_key.public_key()):
        raise TlsError(f"the certificate {cert} does not match the key {key}")
    now = datetime.now(UTC)
    not_before, not_after = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    if not_after < now:
        raise TlsError(f"the certificate {cert} expired on {not_after:%Y-%m-%d %H:%M} UTC")
    if not_before > now:
        raise TlsError(f"the certificate {cert} is not valid before {not_before:%Y-%m-%d %H:%M} UTC")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise TlsError(f"OpenSSL refuses the pair {cert}, {key}: {exc.reason or exc}") from None
    return CertInfo(
        cert=cert,
        key=key,
        subject=certificate.subject.rfc4514_string(),
        fingerprint_sha256=certificate.fingerprint(hashes.SHA256()).hex(":").upper(),
        spki_sha256=base64.b64encode(hashlib.sha256(spki).digest()).decode(),
        not_after=not_after,
    )


def _san(host: str) -> x509.GeneralName:
    name = host.strip().strip("[]")  # an IPv6 address may come as in a URL
    if not name or any(c.isspace() for c in name):
        raise TlsError(f"not a host name or address: {host!r}")
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def self_signed(directory: Path, hosts: list[str], days: int = DEFAULT_DAYS) -> CertInfo:
    """Write ``cert.pem`` and ``key.pem`` (mode 0600) to `directory`: an EC P-256 key and a
    certificate for `hosts` (names and IP addresses) and localhost, valid for `days`; return
    its info."""
    if days <= 0:
        raise TlsError(f"days must be positive, not {days}")
    names = [_san(h) for h in dict.fromkeys([*hosts, *LOOPBACK_HOSTS])]
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Unmute on SLURM (self-signed)")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        # A server certificate, not a CA: Firefox refuses a CA certificate as a server's.
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # Created 0600 (never readable by others, not even briefly), and made so if it existed.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(key_pem)
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return check_pair(cert_path, key_path)


def main(argv: list[str] | None = None) -> None:
    """`python -m orchestrator.tls self-signed|check ...`: print the pair's lines, or exit 1 saying why."""
    parser = argparse.ArgumentParser(
        prog="python -m orchestrator.tls", description="Make or check the orchestrator's HTTPS certificate."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("self-signed", help="write cert.pem and key.pem for these hosts")
    make.add_argument("--dir", type=Path, required=True, help="folder for cert.pem and key.pem")
    make.add_argument(
        "--host", action="append", default=[], help="a name or IP address users open (repeat; adds localhost)"
    )
    make.add_argument("--days", type=int, default=DEFAULT_DAYS, help=f"validity (default {DEFAULT_DAYS})")
    check = commands.add_parser("check", help="check that a certificate and key can serve HTTPS now")
    check.add_argument("--cert", type=Path, required=True)
    check.add_argument("--key", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "self-signed":
            info = self_signed(args.dir, args.host, args.days)
        else:
            info = check_pair(args.cert, args.key)
    except (TlsError, OSError) as exc:
        raise SystemExit(f"{parser.prog}: {exc}") from None
    sys.stdout.write("\n".join(info.lines()) + "\n")


if __name__ == "__main__":
    main()
