"""Readiness probe used by container healthchecks, the SLURM job, the demo and tests.

    python -m kit.healthcheck http://127.0.0.1:3001/ready [--timeout 2]
    python -m kit.healthcheck --service stt    # port from STT_PORT (images)
    python3 healthcheck.py --service llm    # vLLM: /v1/models lists LLM_MODEL (LLM_API_KEY)

Exits 0 when the URL answers 200, else 1, with one short line saying why. Standard
library only, so it starts fast and works in every image. ``--service orchestrator``
probes over HTTPS when ``ORCHESTRATOR_TLS_CERT_FILE`` is set or ``ORCHESTRATOR_TLS`` is
``self-signed``, as the orchestrator then serves.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import urllib.error
import urllib.request

# The port map of .env.example; inside an image the service's own *_PORT variable wins.
DEFAULT_PORTS = {"stt": 3001, "tts": 3003, "orchestrator": 3004}


def _unverified_tls() -> ssl.SSLContext:
    """TLS without certificate checks, for probes only. They reach a service on this
    machine (loopback) whose certificate is the job's self-signed one (no CA vouches for
    it) or one named only for the addresses users open; and a probe sends no secret, it
    only learns whether the service is ready."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def probe(url: str, timeout_s: float) -> str | None:
    """None when `url` answers 200 within `timeout_s`, else the reason."""
    context = _unverified_tls() if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(url, timeout=timeout_s, context=context) as response:
            return None if response.status == 200 else f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        body = exc.read(300).decode(errors="replace")
        return f"HTTP {exc.code} {body}".strip()
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        return f"unreachable: {getattr(exc, 'reason', exc)}"


def probe_llm(timeout_s: float) -> str | None:
    """vLLM is ready when /v1/models lists the model it was asked to serve."""
    port = os.environ.get("LLM_PORT") or "3002"
    model = os.environ.get("LLM_MODEL") or "google/gemma-3-12b-it"
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models")
    if os.environ.get("LLM_API_KEY"):
        request.add_header("Authorization", f"Bearer {os.environ['LLM_API_KEY']}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            served = [m.get("id") for m in json.load(response).get("data", [])]
    except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
        return f"unreachable: {getattr(exc, 'reason', exc)}"
    return None if model in served else f"serving {served}, not {model}"


def service_url(service: str) -> str:
    """The loopback /ready URL of one of this project's services, from its *_PORT variable
    (https for the orchestrator when it is given a certificate, as it then serves only that)."""
    port = os.environ.get(f"{service.upper()}_PORT") or DEFAULT_PORTS[service]
    tls = service == "orchestrator" and (
        os.environ.get("ORCHESTRATOR_TLS_CERT_FILE") or os.environ.get("ORCHESTRATOR_TLS") == "self-signed"
    )
    return f"{'https' if tls else 'http'}://127.0.0.1:{port}/ready"


def main() -> None:
    parser = argparse.ArgumentParser(description="exit 0 if the service answers 200")
    parser.add_argument("url", nargs="?", help="URL to probe")
    parser.add_argument("--service", choices=[*sorted(DEFAULT_PORTS), "llm"], help="probe its /ready")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds, below the caller timeout")
    args = parser.parse_args()
    if (args.url is None) == (args.service is None):
        parser.error("give a URL or --service")
    if args.service == "llm":
        reason = probe_llm(args.timeout)
    else:
        reason = probe(args.url or service_url(args.service), args.timeout)
    if reason is None:
        print("ready")
        sys.exit(0)
    print(f"not ready: {reason}")
    sys.exit(1)


if __name__ == "__main__":
    main()
