"""Routes every service serves: /health, /ready, /metrics and moshi-server's /api/build_info."""

from __future__ import annotations

import platform
import subprocess
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kit.protocol import Capacity

_STARTED = time.time()


@cache
def _git_describe() -> str:
    """Commit of the running code when it is a git checkout, else "unknown" (as in images)."""
    try:
        return subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=2,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def service_routes(
    name: str,
    readiness: Callable[[], str | None],
    capacity: Callable[[], Capacity | None] | None = None,
) -> APIRouter:
    """Build the shared routes.

    `readiness()` returns None when the service is ready, else a short reason
    ("loading model", "warming up") that /ready reports with status 503. A ready
    service's `capacity()`, where given, goes in the /ready answer (`slots`,
    `free_slots`): the orchestrator places new streams by it.
    """
    router = APIRouter()

    @router.get("/health")
    async def health() -> dict[str, object]:
        """Process is alive and serving HTTP; cheap, no model access."""
        return {"status": "ok", "service": name, "uptime_s": round(time.time() - _STARTED, 1)}

    @router.get("/ready")
    async def ready() -> JSONResponse:
        """200 once the model is loaded and one warm-up inference has run, else 503."""
        reason = readiness()
        if reason is None:
            slots = capacity() if capacity is not None else None
            extra = {"slots": slots.slots, "free_slots": slots.free_slots} if slots is not None else {}
            return JSONResponse({"status": "ready", "service": name, **extra})
        return JSONResponse({"status": "not ready", "service": name, "reason": reason}, status_code=503)

    @router.get("/metrics")
    async def metrics() -> Response:
        """Prometheus text exposition of the process-wide registry."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @router.get("/api/build_info")
    async def build_info() -> dict[str, str]:
        """moshi-server's build-info route; unmute's health probe only needs a 200 here."""
        describe = _git_describe()
        return {
            "build_timestamp": str(int(_STARTED)),
            "git_describe": describe,
            "git_hash": describe.split("-")[-1],
            "service": name,
            "python_version": platform.python_version(),
        }

    return router
