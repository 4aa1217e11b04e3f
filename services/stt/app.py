"""The STT FastAPI application: routes, model lifecycle, and the step loop."""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import FastAPI, HTTPException, Request, WebSocket

from kit.audio import SAMPLE_RATE
from kit.auth import require_http_key
from kit.routes import service_routes
from services.common.lifecycle import ModelState, admit_stream, model_lifespan
from services.stt.batcher import SttBatcher
from services.stt.engines import load_engine
from services.stt.engines.base import SttEngine
from services.stt.session import SttSession
from services.stt.settings import SttSettings
from services.stt.transcribe import Transcription, transcribe

logger = logging.getLogger(__name__)

EngineFactory = Callable[[SttSettings], SttEngine]


def build_app(settings: SttSettings, engine_factory: EngineFactory = load_engine) -> FastAPI:
    """Create the app; the model loads in the background so /health answers at once."""
    key = settings.required_api_key()
    state: ModelState[SttBatcher] = ModelState()
    lifespan = model_lifespan(
        state,
        load=lambda: engine_factory(settings),
        make_loop=lambda engine: SttBatcher(engine, int(settings.max_buffered_s * SAMPLE_RATE)),
    )
    app = FastAPI(title="Unmute STT", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.model = state
    app.include_router(
        service_routes("stt", state.readiness, lambda: state.loop.capacity() if state.loop else None)
    )

    @app.websocket("/api/asr-streaming")
    async def asr_streaming(ws: WebSocket) -> None:
        """moshi-server-compatible streaming transcription."""
        loop = await admit_stream(ws, key, state)
        if loop is None:
            return
        await SttSession(ws, loop, settings).run()

    @app.post("/v1/transcribe")
    async def transcribe_file(request: Request) -> Transcription:
        """Transcribe an uploaded audio file (raw body: WAV/FLAC/OGG, any sample rate)."""
        require_http_key(request, key)
        if state.loop is None:
            raise HTTPException(503, f"service not ready: {state.status}")
        return await transcribe(request, state.loop, settings)

    return app
