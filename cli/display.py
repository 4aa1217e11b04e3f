"""How the commands say things to a person: messages, durations, how to connect."""

from __future__ import annotations

import getpass
import os
import socket
import sys
from urllib.parse import urlsplit

from cli.job import Job


def say(message: str) -> None:
    """One line of progress or result, flushed at once (a terminal or a log file may read it)."""
    print(f"unmute: {message}", flush=True)


def duration(seconds: int | None) -> str:
    """14300 -> 3:58:20; None -> unlimited."""
    if seconds is None:
        return "no limit"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    text = f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
    return f"{days}-{text}" if days else text


def connect_text(job: Job) -> str:
    """How to open the assistant: the tunnel and its URL, the direct HTTPS URL when the job
    serves HTTPS, the Open OnDemand link when ONDEMAND_URL names the site's portal."""
    url, token = job.dir.serving_url(), job.token()
    if url is None or token is None:
        return ""
    parts = urlsplit(url)
    node, port = parts.hostname, parts.port
    login = os.environ.get("LOGIN_HOST") or socket.getfqdn()
    scheme = parts.scheme
    lines = [
        "  From your machine, open a tunnel:",
        f"    ssh -N -L {port}:{node}:{port} {getpass.getuser()}@{login}",
        "  then open",
        f"    {scheme}://localhost:{port}/?token={token}",
    ]
    if scheme == "https":
        lines += [
            "  or, from the cluster's network,",
            f"    {url}?token={token}",
            f"  (certificate SHA-256 fingerprint {job.dir.fingerprint()}: check that the browser shows it)",
        ]
    ondemand = os.environ.get("ONDEMAND_URL")
    if ondemand and scheme == "http":
        lines += [
            "  or through Open OnDemand:",
            f"    {ondemand.rstrip('/')}/rnode/{node}/{port}/?token={token}",
        ]
    return "\n".join(lines)


def stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
