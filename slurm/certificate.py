"""The orchestrator's HTTPS certificate for a SLURM job (docs/slurm.md, HTTPS): which kind
the settings ask for, and the pair made or checked, before anything starts, by the
orchestrator's own `python -m orchestrator.tls` (it needs the orchestrator's packages: the
project's python for RUNTIME=host, the orchestrator SIF's for Apptainer). Standard library only."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from job import Job, Settings, fqdn, node_address
from placement import PlanError

TLS_MOUNT = "/run/unmute-tls"  # where an Apptainer orchestrator sees JOB_DIR/tls


def tls_mode(settings: Settings) -> str:
    """off, self-signed, or files (the user's own pair), as the settings ask."""
    cert, key = settings.get("ORCHESTRATOR_TLS_CERT_FILE"), settings.get("ORCHESTRATOR_TLS_KEY_FILE")
    if cert or key:
        if not (cert and key):
            raise PlanError(
                "set both ORCHESTRATOR_TLS_CERT_FILE and ORCHESTRATOR_TLS_KEY_FILE (one is empty)"
            )
        return "files"
    mode = settings.get("ORCHESTRATOR_TLS", "off")
    if mode not in ("off", "self-signed"):
        raise PlanError(
            "ORCHESTRATOR_TLS must be off or self-signed (or set ORCHESTRATOR_TLS_CERT_FILE and _KEY_FILE), "
            f"not '{mode}'"
        )
    return mode


def orchestrator_python(job: Job, tls_dir: Path) -> list[str]:
    """A python with the orchestrator's packages (cryptography): the project's, or its SIF's."""
    if job.runtime == "host":
        return [str(job.unmute_dir / ".venv/bin/python")]
    return ["apptainer", "exec", "--bind", str(tls_dir), str(job.sif("orchestrator")), "python"]


def prepare_certificate(
    job: Job, mode: str, run: Callable[..., subprocess.CompletedProcess] = subprocess.run
) -> str:
    """Make or check the orchestrator's pair in JOB_DIR/tls; its SHA-256 fingerprint."""
    tls_dir = job.job_dir / "tls"
    tls_dir.mkdir(parents=True, exist_ok=True)
    if mode == "files":
        cert, key = (job.settings.get(f"ORCHESTRATOR_TLS_{k}_FILE") for k in ("CERT", "KEY"))
        for given, name, key_name in ((cert, "cert.pem", "CERT"), (key, "key.pem", "KEY")):
            try:
                shutil.copyfile(given, tls_dir / name)
            except OSError:
                raise PlanError(f"cannot read ORCHESTRATOR_TLS_{key_name}_FILE={given}") from None
        arguments = ["check", "--cert", str(tls_dir / "cert.pem"), "--key", str(tls_dir / "key.pem")]
        failure = f"bad TLS certificate ({cert}, {key})"
    else:
        hosts = (job.node, fqdn(), node_address(), "localhost", "127.0.0.1")
        arguments = ["self-signed", "--dir", str(tls_dir), *(f"--host={h}" for h in hosts if h)]
        failure = "could not make a self-signed certificate"
    command = [*orchestrator_python(job, tls_dir), "-m", "orchestrator.tls", *arguments]
    try:
        made = run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    except OSError as exc:
        raise PlanError(f"{failure}: cannot run {command[0]}: {exc}") from None
    if made.returncode != 0:
        reason = made.stdout.strip().rsplit(": ", 1)[-1] if mode == "files" else made.stdout.strip()
        raise PlanError(f"{failure}: {reason}")
    found = re.search(r"^fingerprint_sha256=(\S+)", made.stdout, re.M)
    if not found:
        raise PlanError(f"{failure}: orchestrator.tls printed no fingerprint: {made.stdout.strip()}")
    return found.group(1)
