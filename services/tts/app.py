"""The TTS FastAPI application: routes, model lifecycle, and the step loop."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, HTTPException, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from kit.auth import require_http_key
from kit.http_body import json_body_openapi, read_json_body
from kit.routes import service_routes
from services.common.lifecycle import ModelState, admit_stream, model_lifespan
from services.tts.batcher import TtsBatcher
from services.tts.engines import load_engine
from services.tts.engines.base import TtsEngine
from services.tts.session import QueryError, TtsSession, parse_query
from services.tts.settings import TtsSettings
from services.tts.synthesize import SynthesizeRequest, body_limit, synthesize

EngineFactory = Callable[[TtsSettings], TtsEngine]


def build_app(settings: TtsSettings, engine_factory: EngineFactory = load_engine) -> FastAPI:
    """Create the app; the model loads in the background so /health answers at once."""
    key = settings.required_api_key()
    state: ModelState[TtsBatcher] = ModelState()

    def load() -> TtsEngine:
        engine = engine_factory(settings)
        engine.use_aliases(settings.voice_aliases(engine.name))
        return engine

    lifespan = model_lifespan(state, load=load, make_loop=TtsBatcher)
    app = FastAPI(title="Unmute TTS", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.model = state
    app.include_router(
        service_routes("tts", state.readiness, lambda: state.loop.capacity() if state.loop else None)
    )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        """422 naming each problem, without echoing the input: a NaN or infinite value in it
        cannot be written as JSON, and FastAPI's own answer would then fail with a 500."""
        detail = [{"loc": e["loc"], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return JSONResponse({"detail": detail}, status_code=422)

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

    @app.post("/synthesize", openapi_extra=json_body_openapi(SynthesizeRequest))
    async def synthesize_route(request: Request) -> StreamingResponse:
        """Speak `text` (a JSON `SynthesizeRequest`); the response body is float32 little-endian
        mono PCM at 24 kHz, streamed."""
        require_http_key(request, key)
        body = await read_json_body(
            request, SynthesizeRequest, body_limit(settings), idle_timeout_s=settings.http_body_timeout_s
        )
        return await synthesize(body, ready_batcher(), settings)

    @app.get("/v1/voices")
    async def voices() -> dict[str, object]:
        """The voices this server can use, the one used when none is asked for, the aliases
        (OpenAI's voice names) and the voice each stands for, and the ``voice+variant`` variants."""
        engine = ready_batcher().engine
        return {
            "engine": engine.name,
            "default": engine.default_voice,
            "voices": engine.voices(),
            "aliases": dict(engine.aliases),
            "variants": engine.variants(),
        }

    return app
