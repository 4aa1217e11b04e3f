"""`python -m orchestrator`: run the voice orchestrator (UI and /v1/realtime).

Every flag can also be set by environment (``ORCHESTRATOR_PORT``, ``LLM_URL``,
``ACCESS_TOKEN``, ...) or `.env`; flags win.

With ``ORCHESTRATOR_TLS_CERT_FILE`` and ``ORCHESTRATOR_TLS_KEY_FILE`` (``--tls-cert``,
``--tls-key``) it serves HTTPS and WSS instead, after checking the pair before anything
starts (``python -m orchestrator.tls`` makes a self-signed one): browsers give the page
the microphone only over HTTPS, or on localhost (an SSH tunnel).

``ORCHESTRATOR_WORKERS`` (``--workers``) above 1 runs that many worker processes behind
the one port, for more sessions than one core carries. uvicorn's supervisor binds the
port once and hands it to every worker; a new connection goes to whichever worker accepts
it first, and a worker that dies is replaced. Sessions share nothing, so each worker is a
whole orchestrator with its own session cap (``ORCHESTRATOR_MAX_SESSIONS`` per worker),
backend probe and metrics: ``/metrics``, ``/ready`` and ``/api/status`` describe the
worker that answered.
"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI
from pydantic import ValidationError
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from kit.logs import configure_logging
from kit.serve import common_flags, run
from kit.server import server_config
from orchestrator.app import build_app
from orchestrator.settings import OrchestratorSettings
from orchestrator.tls import TlsError, check_pair, self_signed

logger = logging.getLogger(__name__)

#: The supervisor's flags, for the workers it spawns (they are started without argv).
WORKER_FLAGS_ENV = "UNMUTE_ORCHESTRATOR_FLAGS"


def flags_parser() -> argparse.ArgumentParser:
    """The orchestrator's command line."""
    parser = common_flags("python -m orchestrator", "Unmute voice orchestrator")
    parser.add_argument("--llm-url", dest="llm_url", help="OpenAI base URL of the LLM, or 'echo'")
    parser.add_argument("--stt-url", dest="stt_url")
    parser.add_argument("--tts-url", dest="tts_url")
    parser.add_argument("--workers", type=int, help="worker processes behind the one port (default 1)")
    parser.add_argument("--tls-cert", dest="tls_cert_file", help="PEM certificate (chain): serve HTTPS/WSS")
    parser.add_argument("--tls-key", dest="tls_key_file", help="PEM private key of --tls-cert")
    return parser


def checked_tls(settings: OrchestratorSettings) -> tuple[Path, Path] | None:
    """The certificate and key to serve HTTPS/WSS with, checked (or made) now; None for HTTP."""
    cert, key = settings.tls_cert_file, settings.tls_key_file
    if cert is None and key is None:
        return self_signed_for_this_run(settings) if settings.tls == "self-signed" else None
    if cert is None or key is None:
        raise TlsError(
            "set both ORCHESTRATOR_TLS_CERT_FILE (--tls-cert) and ORCHESTRATOR_TLS_KEY_FILE (--tls-key), "
            "or neither"
        )
    check_pair(cert, key)
    return cert, key


def self_signed_for_this_run(settings: OrchestratorSettings) -> tuple[Path, Path]:
    """A certificate for this host and ORCHESTRATOR_TLS_HOSTS, gone when the process ends."""
    directory = Path(tempfile.mkdtemp(prefix="unmute-tls-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    extra = [host.strip() for host in (settings.tls_hosts or "").split(",") if host.strip()]
    hosts = list(dict.fromkeys([socket.gethostname(), socket.getfqdn(), *extra]))
    info = self_signed(directory, hosts)
    # Printed, not logged: logging is configured later, and the user must see it to check it.
    print(
        f"orchestrator: HTTPS with a self-signed certificate for {', '.join(hosts)} (and loopback); "
        f"SHA-256 fingerprint {info.fingerprint_sha256}",
        file=sys.stderr,
        flush=True,
    )
    return info.cert, info.key


def unresolvable_replicas(settings: OrchestratorSettings) -> list[str]:
    """The replica URLs whose host name does not resolve (a node list that cannot be reached)."""
    bad = []
    for url in [*settings.stt_endpoints, *settings.tts_endpoints, *settings.llm_endpoints]:
        host = urlsplit(url).hostname
        if host is None:  # "echo"
            continue
        try:
            socket.getaddrinfo(host, None)
        except OSError:
            bad.append(url)
    return bad


def main(argv: list[str] | None = None) -> None:
    """Read flags and settings, serve: in this process, or as the supervisor of several workers."""
    parser = flags_parser()
    flags = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    try:
        settings = OrchestratorSettings(**flags)
    except ValidationError as exc:
        raise SystemExit(f"{parser.prog}: bad settings: {exc}") from None
    # Before the app is built or the port bound: bad settings fail at once, saying why.
    unreachable = unresolvable_replicas(settings)
    if unreachable:
        raise SystemExit(f"{parser.prog}: these backends' hosts do not resolve: {', '.join(unreachable)}")
    try:
        tls = checked_tls(settings)
    except TlsError as exc:
        raise SystemExit(f"{parser.prog}: bad TLS certificate: {exc}") from None
    if settings.workers == 1:
        run("orchestrator", parser, OrchestratorSettings, build_app, argv, tls=tls)
    else:
        supervise(settings, flags, tls)


def worker_app() -> FastAPI:
    """One worker's app; uvicorn calls this in each worker process."""
    settings = OrchestratorSettings(**json.loads(os.environ[WORKER_FLAGS_ENV]))
    configure_logging(settings.log_level, settings.log_format)
    try:
        return build_app(settings)
    except ValueError as exc:
        # This exit code tells the supervisor to stop rather than restart the worker forever.
        logger.error("orchestrator worker cannot start: %s", exc)
        sys.exit(STARTUP_FAILURE)


def supervise(
    settings: OrchestratorSettings, flags: dict[str, Any], tls: tuple[Path, Path] | None = None
) -> None:
    """Serve `settings.workers` workers on the one port (over HTTPS/WSS when `tls`, a checked
    certificate and key, is given) until stopped; exit non-zero if they cannot start."""
    configure_logging(settings.log_level, settings.log_format)
    os.environ[WORKER_FLAGS_ENV] = json.dumps(flags)  # the spawned workers inherit the environment
    config = server_config(
        "orchestrator.__main__:worker_app", settings, tls=tls, factory=True, workers=settings.workers
    )
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    supervisor.run()
    if any(worker.exitcode == STARTUP_FAILURE for worker in supervisor.processes):
        raise SystemExit("orchestrator: the workers could not start (the reason is logged above)")


if __name__ == "__main__":
    main()
