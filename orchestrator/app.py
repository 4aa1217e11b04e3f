"""The orchestrator app: UI, `/v1/realtime`, backend status, health and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from fastapi import FastAPI, WebSocket
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import Gauge

from kit.routes import service_routes
from orchestrator.auth import TokenAuth, accepted_subprotocol
from orchestrator.clients.llm import LlmClient
from orchestrator.clients.replicas import LlmReplicas, ReplicaPool, http_url, poll_forever, ready_prober
from orchestrator.pipeline.backends import ServiceBackends
from orchestrator.realtime.connection import RealtimeConnection
from orchestrator.realtime.server_events import ErrorEvent
from orchestrator.settings import OrchestratorSettings
from orchestrator.turn_model import SmartTurn, TurnModelMissing

logger = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
SESSIONS = Gauge("orchestrator_sessions", "Open Realtime sessions")


class BackendStatus:
    """Readiness of STT, TTS and LLM: a kind is ready while one of its replicas is (the
    replica poller keeps their health current; the UI and /ready read it)."""

    def __init__(self, backends: ServiceBackends) -> None:
        self.pools = {"stt": backends.stt, "tts": backends.tts, "llm": backends.llm.pool}
        self.llm = backends.llm

    def get(self) -> dict[str, dict[str, object]]:
        """Per kind: ready, why not, and its replicas (`Replica.status`); the LLM's kind and model."""
        result: dict[str, dict[str, object]] = {
            name: {"ready": pool.down is None, "detail": pool.down, "replicas": pool.status()}
            for name, pool in self.pools.items()
        }
        result["llm"] |= {"echo": self.llm.is_echo, "model": self.llm.model}
        return result

    def not_ready(self) -> str | None:
        """None while every kind has a ready replica, else which kinds have none, and why."""
        down = [f"{name}: {pool.down}" for name, pool in self.pools.items() if pool.down is not None]
        return "; ".join(down) or None


def load_turn_model(settings: OrchestratorSettings) -> SmartTurn | None:
    """Smart Turn for semantic_vad, shared by every session; without it, pauses are judged by
    the STT's pause heads and new sessions start with server_vad (said once, in the log)."""
    try:
        return SmartTurn.from_path(settings.turn_model_path)
    except TurnModelMissing as missing:
        logger.warning("no end-of-turn model: %s; new sessions use server_vad", missing)
        return None


def build_app(settings: OrchestratorSettings) -> FastAPI:
    """Create the app (auth wraps everything but the probes)."""
    # One client for the app's life: a new one loads the CA store (~45 ms of CPU) each time.
    http = httpx.AsyncClient(timeout=1.5)
    llm = LlmReplicas(
        [
            LlmClient(
                url,
                settings.llm_api_key.get_secret_value() if settings.llm_api_key else None,
                settings.llm_model,
                timeout_s=settings.llm_timeout_s,
                temperature=settings.llm_temperature,
            )
            for url in settings.llm_endpoints
        ]
    )
    backends = ServiceBackends(
        ReplicaPool("STT", settings.stt_endpoints, ready_prober(http)),
        ReplicaPool("TTS", settings.tts_endpoints, ready_prober(http)),
        settings.required_api_key().get_secret_value(),
        llm,
        turn_model=load_turn_model(settings),
    )
    status = BackendStatus(backends)
    open_sessions: set[RealtimeConnection] = set()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.access_token is None:
            logger.warning("ACCESS_TOKEN is not set: anyone who can reach this port can use the assistant")
        # Owned here: started with the app, cancelled and awaited when it stops.
        poller = asyncio.create_task(
            poll_forever([backends.stt, backends.tts, llm.pool]), name="replica-poller"
        )
        try:
            yield
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            await llm.aclose()
            await http.aclose()

    # No trailing-slash redirects: they name an absolute URL, which is wrong behind a proxy
    # that strips a path prefix (Open OnDemand's rnode); every URL the UI uses is relative.
    app = FastAPI(
        title="Unmute orchestrator", lifespan=lifespan, docs_url=None, redoc_url=None, redirect_slashes=False
    )
    app.include_router(service_routes("orchestrator", status.not_ready))

    @app.get("/")
    async def index() -> FileResponse:
        """The browser UI."""
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    @app.get("/api/status")
    async def backend_status() -> dict[str, object]:
        """Backend readiness and replicas for the UI, plus what kind of LLM answers."""
        return {
            "backends": status.get(),
            "sessions": len(open_sessions),
            "max_sessions": settings.max_sessions,
        }

    @app.get("/api/voices")
    async def voices() -> dict[str, object]:
        """The TTS service's voices (the replica a new stream would go to), for the UI's voice picker."""
        url = http_url(backends.tts.choose().url) + "/v1/voices"
        try:
            response = await http.get(url, timeout=2.0)
            response.raise_for_status()
            return response.json()
        except httpx.HTTPError as exc:
            return {"voices": [], "default": None, "error": f"TTS voices unavailable: {type(exc).__name__}"}

    @app.websocket("/v1/realtime")
    async def realtime(ws: WebSocket) -> None:
        """OpenAI Realtime API (audio in, audio out)."""
        connection = RealtimeConnection(ws, backends, settings)
        if len(open_sessions) >= settings.max_sessions:
            await ws.accept(subprotocol=accepted_subprotocol(ws.scope.get("subprotocols") or []))
            busy = f"all {settings.max_sessions} sessions are in use; try later"
            await ws.send_text(ErrorEvent.of("server_busy", busy, kind="server_error").wire())
            await ws.close(code=1013)
            return
        open_sessions.add(connection)
        SESSIONS.set(len(open_sessions))
        try:
            await connection.run()
        finally:
            open_sessions.discard(connection)
            SESSIONS.set(len(open_sessions))

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(TokenAuth, token=settings.access_token)
    return app
