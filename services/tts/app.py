"""The TTS FastAPI application: routes, model lifecycle, and the step loop."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, HTTPException, Request, WebSocket
from fastapi.responses import PlainTextResponse, StreamingResponse

from services.common.auth import require_http_key
from services.common.lifecycle import ModelState, admit_stream, model_lifespan
from services.common.routes import service_routes
from services.tts.batcher import TtsBatcher
from services.tts.engines import load_engine
from services.tts.engines.base import TtsEngine
from services.tts.session import QueryError, TtsSession, parse_query
from services.tts.settings import TtsSettings
from services.tts.synthesize import SynthesizeRequest, synthesize

EngineFactory = Callable[[TtsSettings], TtsEngine]


def build_app(settings: TtsSettings, engine_factory: EngineFactory = load_engine) -> FastAPI:
    """Create the app; the model loads in the background so /health answers at once."""
    key = settings.required_api_key()
    state: ModelState[TtsBatcher] = ModelState()
    lifespan = model_lifespan(state, load=lambda: engine_factory(settings), make_loop=TtsBatcher)
    app = FastAPI(title="Unmute TTS", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.model = state
    app.include_router(service_routes("tts", state.readiness))

    def ready_batcher() -> TtsBatcher:
        if state.loop is None:
            raise HTTPException(503, f"service not ready: {state.status}")
        return state.loop

    @app.websocket("/api/tts_streaming")
    async def tts_streaming(ws: WebSocket) -> None:
        """moshi-server-compatible streaming synthesis."""
        loop = await admit_stream(ws, key, state)
        if loop is None:
            return
        try:
            query, start = parse_query(dict(ws.query_params), loop.engine, settings)
        except QueryError as exc:
            await ws.send_denial_response(PlainTextResponse(str(exc), status_code=400))
            return
        await TtsSession(ws, loop, settings, query, start).run()

    @app.post("/synthesize")
    async def synthesize_route(body: SynthesizeRequest, request: Request) -> StreamingResponse:
        """Speak `text`; the response body is float32 little-endian mono PCM at 24 kHz, streamed."""
        require_http_key(request, key)
        return await synthesize(body, ready_batcher(), settings)

    @app.get("/v1/voices")
    async def voices() -> dict[str, object]:
        """The voices this server can use, and the one used when none is asked for."""
        engine = ready_batcher().engine
        return {"engine": engine.name, "default": engine.default_voice, "voices": engine.voices()}

    return app
