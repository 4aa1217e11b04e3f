"""The orchestrator app: UI, `/v1/realtime`, backend status, health and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from fastapi import FastAPI, WebSocket
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import Gauge

from orchestrator.auth import TokenAuth, accepted_subprotocol
from orchestrator.clients.llm import LlmClient
from orchestrator.pipeline.backends import ServiceBackends
from orchestrator.realtime.connection import RealtimeConnection
from orchestrator.realtime.server_events import ErrorEvent
from orchestrator.settings import OrchestratorSettings
from orchestrator.turn_model import SmartTurn, TurnModelMissing
from services.common.routes import service_routes

logger = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
SESSIONS = Gauge("orchestrator_sessions", "Open Realtime sessions")
STATUS_TTL_S = 2.0


class BackendStatus:
    """Readiness of STT, TTS and LLM, probed at most every `STATUS_TTL_S` (UI and /ready poll it)."""

    def __init__(self, settings: OrchestratorSettings, llm: LlmClient) -> None:
        self.settings = settings
        self.llm = llm
        self._checked = 0.0
        self._result: dict[str, dict[str, object]] = {}
        self._lock = asyncio.Lock()
        # One client for the app's life: a new one loads the CA store (~45 ms of CPU) each time.
        self.http = httpx.AsyncClient(timeout=1.5)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _probe(self, ws_url: str) -> str | None:
        url = ws_url.replace("ws", "http", 1) + "/ready"
        try:
            response = await self.http.get(url)
        except httpx.HTTPError as exc:
            return f"unreachable ({type(exc).__name__})"
        if response.status_code == 200:
            return None
        try:
            return str(response.json().get("reason", response.status_code))
        except ValueError:
            return f"HTTP {response.status_code}"

    async def get(self) -> dict[str, dict[str, object]]:
        async with self._lock:
            if time.monotonic() - self._checked > STATUS_TTL_S:
                stt, tts, llm = await asyncio.gather(
                    self._probe(self.settings.stt_ws), self._probe(self.settings.tts_ws), self.llm.ready()
                )
                self._result = {
                    "stt": {"ready": stt is None, "detail": stt},
                    "tts": {"ready": tts is None, "detail": tts},
                    "llm": {
                        "ready": llm is None,
                        "detail": llm,
                        "echo": self.llm.is_echo,
                        "model": self.llm.model,
                    },
                }
                self._checked = time.monotonic()
            return self._result

    async def not_ready(self) -> str | None:
        status = await self.get()
        down = [f"{name}: {s['detail']}" for name, s in status.items() if not s["ready"]]
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
    llm = LlmClient(
        settings.llm_base if settings.llm_url != "echo" else "echo",
        settings.llm_api_key.get_secret_value() if settings.llm_api_key else None,
        settings.llm_model,
        timeout_s=settings.llm_timeout_s,
        temperature=settings.llm_temperature,
    )
    backends = ServiceBackends(
        settings.stt_ws,
        settings.tts_ws,
        settings.required_api_key().get_secret_value(),
        llm,
        turn_model=load_turn_model(settings),
    )
    status = BackendStatus(settings, llm)
    ready_reason: dict[str, str | None] = {"reason": "starting"}
    open_sessions: set[RealtimeConnection] = set()

    async def refresh_readiness() -> None:
        while True:
            ready_reason["reason"] = await status.not_ready()
            await asyncio.sleep(STATUS_TTL_S)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.access_token is None:
            logger.warning("ACCESS_TOKEN is not set: anyone who can reach this port can use the assistant")
        probe = asyncio.create_task(refresh_readiness(), name="readiness")
        try:
            yield
        finally:
            probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await probe
            await llm.aclose()
            await status.aclose()

    app = FastAPI(title="Unmute orchestrator", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.include_router(service_routes("orchestrator", lambda: ready_reason["reason"]))

    @app.get("/")
    async def index() -> FileResponse:
        """The browser UI."""
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    @app.get("/api/status")
    async def backend_status() -> dict[str, object]:
        """Backend readiness for the UI, plus what kind of LLM answers."""
        return {
            "backends": await status.get(),
            "sessions": len(open_sessions),
            "max_sessions": settings.max_sessions,
        }

    @app.get("/api/voices")
    async def voices() -> dict[str, object]:
        """The TTS service's voices, for the UI's voice picker."""
        url = settings.tts_ws.replace("ws", "http", 1) + "/v1/voices"
        try:
            response = await status.http.get(url, timeout=2.0)
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
