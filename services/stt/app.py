"""The STT FastAPI application: routes, model lifecycle, and the step loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from fastapi import FastAPI, HTTPException, Request, WebSocket

from services.common.audio import SAMPLE_RATE
from services.common.auth import authorize_websocket, require_http_key
from services.common.protocol import Error
from services.common.routes import service_routes
from services.stt.batcher import SttBatcher
from services.stt.engines import load_engine
from services.stt.engines.base import SttEngine
from services.stt.session import AsrSession
from services.stt.settings import SttSettings
from services.stt.transcribe import Transcription, transcribe

logger = logging.getLogger(__name__)


@dataclass
class SttState:
    """What the routes share: settings, and once loaded, the batcher."""

    settings: SttSettings
    batcher: SttBatcher | None = None
    step_loop: asyncio.Task[None] | None = None
    status: str = "loading model"

    def readiness(self) -> str | None:
        return None if self.batcher is not None else self.status


EngineFactory = Callable[[SttSettings], SttEngine]


async def _load(state: SttState, engine_factory: EngineFactory) -> None:
    try:
        engine: SttEngine = await asyncio.to_thread(engine_factory, state.settings)
        state.status = "warming up"
        await asyncio.to_thread(engine.warmup)
    except Exception as exc:
        state.status = f"failed to load: {exc}"
        logger.exception("STT engine failed to load; stopping")
        # A service that cannot serve must exit, so compose/SLURM see the failure at once.
        signal.raise_signal(signal.SIGTERM)
        return
    batcher = SttBatcher(engine, int(state.settings.max_buffered_s * SAMPLE_RATE))
    state.step_loop = asyncio.create_task(batcher.run(), name="stt-step-loop")
    state.batcher = batcher
    logger.info(
        "STT ready", extra={"engine": engine.name, "slots": engine.batch_size, "prs": engine.pause_source}
    )


def build_app(settings: SttSettings, engine_factory: EngineFactory = load_engine) -> FastAPI:
    """Create the app; the model loads in the background so /health answers at once."""
    if settings.service_api_key is None:
        raise ValueError(
            "SERVICE_API_KEY is not set: set it in the environment or .env (make env writes one)"
        )
    key = settings.service_api_key
    state = SttState(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loader = asyncio.create_task(_load(state, engine_factory), name="stt-load")
        try:
            yield
        finally:
            loader.cancel()
            with contextlib.suppress(BaseException):
                await loader
            if state.batcher is not None and state.step_loop is not None:
                await state.batcher.aclose(state.step_loop)

    app = FastAPI(title="Unmute STT", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.stt = state
    app.include_router(service_routes("stt", state.readiness))

    @app.websocket("/api/asr-streaming")
    async def asr_streaming(ws: WebSocket) -> None:
        """moshi-server-compatible streaming transcription."""
        if not await authorize_websocket(ws, key):
            return
        if state.batcher is None:
            await ws.accept()
            await ws.send_bytes(Error(message=f"service not ready: {state.status}").pack())
            await ws.close(code=1013)
            return
        await AsrSession(ws, state.batcher, settings).run()

    @app.post("/v1/transcribe")
    async def transcribe_file(request: Request) -> Transcription:
        """Transcribe an uploaded audio file (raw body: WAV/FLAC/OGG, any sample rate)."""
        require_http_key(request, key)
        if state.batcher is None:
            raise HTTPException(503, f"service not ready: {state.status}")
        return await transcribe(request, state.batcher, settings)

    return app
