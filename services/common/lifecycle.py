"""What every model service does around its model: load it off the event loop, warm it
up, run its step loop, report readiness, stop cleanly, and exit if loading fails."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from fastapi import FastAPI, WebSocket
from pydantic import SecretStr

from services.common.auth import authorize_websocket
from services.common.protocol import Error
from services.common.settings import ServiceSettings

logger = logging.getLogger(__name__)


class Engine(Protocol):
    """A batched model engine."""

    name: str
    batch_size: int

    def warmup(self) -> None: ...


class StepLoop(Protocol):
    """A batcher that owns an engine and steps it."""

    async def run(self) -> None: ...

    def close_all(self) -> None: ...


E = TypeVar("E", bound=Engine)
L = TypeVar("L", bound=StepLoop)


@dataclass
class ModelState(Generic[L]):
    """Loading status and, once ready, the step loop (which owns the engine)."""

    status: str = "loading model"
    loop: L | None = None
    task: asyncio.Task[None] | None = None

    def readiness(self) -> str | None:
        """None when ready, else why not (for /ready)."""
        return None if self.loop is not None else self.status

    @property
    def failed(self) -> bool:
        return self.status.startswith("failed")


def model_lifespan(
    state: ModelState[L], load: Callable[[], E], make_loop: Callable[[E], L]
) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    """A FastAPI lifespan that loads in the background, so /health answers during loading."""

    async def _load() -> None:
        try:
            engine = await asyncio.to_thread(load)
            state.status = "warming up"
            await asyncio.to_thread(engine.warmup)
        except Exception as exc:
            state.status = f"failed to load: {exc}"
            logger.exception("engine failed to load; stopping")
            # A service that cannot serve must exit, so compose/SLURM see the failure at once.
            signal.raise_signal(signal.SIGTERM)
            return
        state.loop = make_loop(engine)
        state.task = asyncio.create_task(state.loop.run(), name=f"{engine.name}-step-loop")
        state.status = "ready"
        logger.info("ready", extra={"engine": engine.name, "slots": engine.batch_size})

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loader = asyncio.create_task(_load(), name="model-load")
        try:
            yield
        finally:
            loader.cancel()
            with contextlib.suppress(BaseException):
                await loader
            if state.loop is not None and state.task is not None:
                state.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await state.task
                state.loop.close_all()

    return lifespan


async def admit_stream(ws: WebSocket, key: SecretStr, state: ModelState[L]) -> L | None:
    """The step loop for a new moshi-server stream, or None once it has been answered.

    A wrong key gets 401 before the upgrade; a stream that arrives before the model is
    ready gets one `Error` and a close (1013).
    """
    if not await authorize_websocket(ws, key):
        return None
    if state.loop is None:
        await ws.accept()
        await ws.send_bytes(Error(message=f"service not ready: {state.status}").pack())
        await ws.close(code=1013)
        return None
    return state.loop


def serve(app: FastAPI, settings: ServiceSettings, state: ModelState[Any] | None, name: str) -> None:
    """Run uvicorn; exit non-zero when the model failed to load."""
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_config=None,
            # Leave room above our own per-message limit so an oversized message is
            # answered with an Error instead of a protocol-level close.
            ws_max_size=max(16 * 1024 * 1024, 4 * settings.max_message_bytes),
            ws_per_message_deflate=False,
        )
    )
    server.run()
    if state is not None and state.failed:
        raise SystemExit(f"{name} service stopped: {state.status}")
