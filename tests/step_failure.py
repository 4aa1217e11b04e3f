"""What a failing engine step must do to a model service, checked the same way for STT and
TTS: every open stream gets an `Error` and is closed, `/ready` turns 503 with the reason, the
traceback is logged, and the process exits non-zero for its supervisor to see."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import msgpack
import websockets

from devkit.processes import ServiceProcess

REASON = "step error: RuntimeError: simulated device fault"


@contextlib.asynccontextmanager
async def readiness_polled(service: ServiceProcess) -> AsyncIterator[list[tuple[int, dict]]]:
    """`/ready` every 20 ms while the block runs, until the service stops answering."""
    seen: list[tuple[int, dict]] = []

    async def poll() -> None:
        async with httpx.AsyncClient(base_url=service.http, timeout=2) as http:
            with contextlib.suppress(httpx.HTTPError):
                while True:
                    response = await http.get("/ready")
                    seen.append((response.status_code, response.json()))
                    await asyncio.sleep(0.02)

    poller = asyncio.create_task(poll())
    try:
        yield seen
    finally:
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller


async def errors_until_closed(ws: websockets.ClientConnection, wait_s: float = 30.0) -> list[dict]:
    """Every `Error` a stream receives until the server closes it."""
    messages: list[dict] = []
    with contextlib.suppress(websockets.ConnectionClosed):
        while True:
            messages.append(msgpack.unpackb(await asyncio.wait_for(ws.recv(), wait_s)))
    return [m for m in messages if m["type"] == "Error"]


async def assert_fails_loudly(
    service: ServiceProcess,
    streams: list[websockets.ClientConnection],
    engine: str,
    trigger: Callable[[], Awaitable[None]],
) -> None:
    """`trigger` makes the step fail; then each of `streams` gets the engine's error and is
    closed, and the process exits non-zero, having said why on `/ready` and in its log."""
    async with readiness_polled(service) as readiness:
        await trigger()
        for ws in streams:
            errors = await errors_until_closed(ws)
            assert errors and f"internal error in the {engine} engine" in errors[0]["message"], errors
        assert await asyncio.to_thread(service.process.wait, 30) != 0
    failed = [body for status, body in readiness if status == 503]
    assert failed and REASON in failed[0]["reason"], readiness[-3:]
    log = service.log_text()
    assert "simulated device fault" in log and "Traceback" in log
