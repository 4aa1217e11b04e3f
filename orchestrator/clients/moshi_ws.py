"""Shared connect/handshake for moshi-server WebSockets (STT and TTS)."""

from __future__ import annotations

import asyncio

import msgpack
import websockets
from websockets.asyncio.client import ClientConnection

from orchestrator.clients.errors import BackendAtCapacity, BackendError, BackendTimeout, BackendUnavailable
from services.common.auth import API_KEY_HEADER

CONNECT_TIMEOUT_S = 2.0  # unmute allows 0.5 s for connect + Ready; we allow more on loaded CPUs
CLOSE_TIMEOUT_S = 1.0  # websockets' 10 s default would stall a cancelled turn


async def open_stream(service: str, url: str, api_key: str) -> ClientConnection:
    """Connect, wait for `Ready`, map every failure to a `BackendError` within the timeout."""
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            ws = await websockets.connect(
                url,
                additional_headers={API_KEY_HEADER: api_key},
                max_size=None,
                close_timeout=CLOSE_TIMEOUT_S,
                compression=None,
            )
            first = msgpack.unpackb(await ws.recv())
    except TimeoutError:
        raise BackendTimeout(service, f"no Ready from {url} within {CONNECT_TIMEOUT_S:.0f} s") from None
    except websockets.InvalidStatus as exc:
        reason = exc.response.body.decode(errors="replace").strip() if exc.response.body else ""
        detail = f"refused the stream (HTTP {exc.response.status_code}{': ' + reason if reason else ''})"
        raise BackendUnavailable(service, detail) from None
    except (OSError, websockets.WebSocketException) as exc:
        raise BackendUnavailable(service, f"cannot reach {url}: {exc}") from None
    if first.get("type") == "Ready":
        return ws
    await ws.close()
    message = first.get("message", str(first))
    if message == "no free channels":
        raise BackendAtCapacity(service, "all streams are in use (no free channels)")
    raise BackendError(service, f"unexpected first message: {message}")
