"""What every model service does around its model: load it off the event loop, warm it
up, run its step loop, report readiness, and stop the process if loading or a step fails
(`kit.serve` then exits non-zero, reading `ModelState.failed`)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from fastapi import FastAPI, WebSocket
from pydantic import SecretStr

from kit.auth import authorize_websocket
from kit.protocol import Error
from services.common.steploop import StepFailed, StepLoop

logger = logging.getLogger(__name__)


class Engine(Protocol):
    """A batched model engine."""

    name: str
    batch_size: int

    def warmup(self) -> None: ...


E = TypeVar("E", bound=Engine)
L = TypeVar("L", bound=StepLoop[Any])

#: How long a failed step loop waits for sessions to send their streams' Error before the
#: process stops (a client that does not read must not hold the exit up).
FAILURE_FLUSH_S = 5.0
#: ... and at least this long, so probes see /ready answer 503 with the reason before it goes.
FAILURE_GRACE_S = 1.0


@dataclass
class ModelState(Generic[L]):
    """Loading status and, while the service can take streams, the step loop (which owns the engine)."""

    status: str = "loading model"
    loop: L | None = None

    def readiness(self) -> str | None:
        """None when ready, else why not (for /ready)."""
        return None if self.loop is not None else self.status

    @property
    def failed(self) -> bool:
        return self.status.startswith("failed")


async def _run_step_loop(state: ModelState[L], loop: L) -> None:
    """Run the loop; if a step fails, refuse new work, let clients read their Error, then stop."""
    try:
        await loop.run()
    except StepFailed as exc:
        state.status = f"failed: {exc}"
        state.loop = None
        await asyncio.gather(loop.flush_failed(FAILURE_FLUSH_S), asyncio.sleep(FAILURE_GRACE_S))
        # The same exit as a failed load: uvicorn stops, serve() exits non-zero.
        signal.raise_signal(signal.SIGTERM)


def model_lifespan(
    state: ModelState[L], load: Callable[[], E], make_loop: Callable[[E], L]
) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    """A FastAPI lifespan that loads in the background, so /health answers during loading."""

    async def _load() -> None:
        try:
            engine = await asyncio.to_thread(load)
            state.status = "warming up"
            await asyncio.to_thread(engine.warmup)
            # Everything loaded so far lives as long as the process: move it out of the
            # collector's reach, or each full collection walks the model's objects and
            # stalls a step (~150 ms, every few hundred steps, measured on the STT).
            gc.collect()
            gc.freeze()
        except Exception as exc:
            state.status = f"failed to load: {exc}"
            logger.exception("engine failed to load; stopping")
            # A service that cannot serve must exit, so compose/SLURM see the failure at once.
            signal.raise_signal(signal.SIGTERM)
            return
        loop = make_loop(engine)
        state.loop = loop
        state.status = "ready"
        logger.info("ready", extra={"engine": engine.name, "slots": engine.batch_size})
        # This task owns the step loop for the life of the service; lifespan cancels it.
        try:
            await _run_step_loop(state, loop)
        finally:
            loop.close_all()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = asyncio.create_task(_load(), name="model-load-and-step")
        try:
            yield
        finally:
            service.cancel()
            with contextlib.suppress(BaseException):
                await service

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
