"""What the STT and TTS clients share: connecting to a moshi-server WebSocket, waiting
for `Ready`, sending msgpack messages, and reading typed messages until the end."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import TracebackType
from typing import ClassVar, Self

import msgpack
import websockets
from websockets.asyncio.client import ClientConnection

from kit.auth import API_KEY_HEADER
from kit.protocol import MessageParser, ProtocolError, WireMessage
from orchestrator.clients.errors import BackendAtCapacity, BackendError, BackendTimeout, BackendUnavailable

CONNECT_TIMEOUT_S = 2.0  # unmute allows 0.5 s for connect + Ready; we allow more on loaded CPUs
CLOSE_TIMEOUT_S = 1.0  # websockets' 10 s default would stall a cancelled turn


async def open_stream(service: str, url: str, api_key: str) -> ClientConnection:
    """Connect, wait for `Ready`, map every failure to a `BackendError` within the timeout.

    A connection that does not end up handed to the caller is closed here, whatever
    stopped it (a refusal, a timeout, or the caller's cancellation): each one holds a
    slot on the service until it is closed.
    """
    ws: ClientConnection | None = None
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            ws = await websockets.connect(
                url,
                additional_headers={API_KEY_HEADER: api_key},
                max_size=None,
                close_timeout=CLOSE_TIMEOUT_S,
                compression=None,
                # The services are ours and near: never through an HTTP(S)_PROXY meant for the
                # internet (and looking one up walks the environment on every connect).
                proxy=None,
            )
            first = msgpack.unpackb(await ws.recv())
        if not isinstance(first, dict):
            raise BackendError(service, f"unexpected first message: {first!r:.200}")
    except BaseException as exc:
        if ws is not None:
            await close_quietly(ws)
        if isinstance(exc, TimeoutError):
            raise BackendTimeout(service, f"no Ready from {url} within {CONNECT_TIMEOUT_S:.0f} s") from None
        if isinstance(exc, websockets.InvalidStatus):
            body = exc.response.body
            reason = body.decode(errors="replace").strip() if body else ""
            detail = f"refused the stream (HTTP {exc.response.status_code}{': ' + reason if reason else ''})"
            raise BackendUnavailable(service, detail) from None
        if isinstance(exc, (OSError, websockets.WebSocketException)):
            raise BackendUnavailable(service, f"cannot reach {url}: {exc}") from None
        if isinstance(exc, (ValueError, msgpack.UnpackException)):
            raise BackendError(service, f"unreadable first message: {exc}") from None
        raise
    if first.get("type") == "Ready":
        return ws
    await close_quietly(ws)
    message = first.get("message", str(first))
    if message == "no free channels":
        raise BackendAtCapacity(service, "all streams are in use (no free channels)")
    raise BackendError(service, f"unexpected first message: {message}")


async def close_quietly(ws: ClientConnection) -> None:
    """Close cleanly within `CLOSE_TIMEOUT_S`; if even that is interrupted, drop the TCP connection."""
    try:
        with contextlib.suppress(Exception):
            await ws.close()
    finally:
        ws.transport.abort()  # a no-op once the close has completed


class MoshiStream:
    """An open stream: send packed messages, read typed ones; losses become `BackendUnavailable`.

    Used as an async context manager, so that the stream is closed on every way out.
    """

    service: ClassVar[str]
    parser: ClassVar[MessageParser]

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws

    async def _send(self, frame: bytes) -> None:
        """Send one packed message (`WireMessage.pack`, or `pack_audio` for samples)."""
        try:
            await self._ws.send(frame)
        except websockets.ConnectionClosed as exc:
            raise BackendUnavailable(self.service, f"connection lost ({exc})") from None

    async def events(self) -> AsyncIterator[WireMessage]:
        """Messages until the server closes cleanly; an abnormal close raises `BackendUnavailable`."""
        try:
            async for raw in self._ws:
                try:
                    yield self.parser.parse(raw)
                except ProtocolError:
                    continue  # a newer server's extra message types are not ours to fail on
        except websockets.ConnectionClosedError as exc:
            raise BackendUnavailable(self.service, f"connection lost ({exc})") from None

    async def close(self) -> None:
        """Close the stream (freeing its slot on the service) even when cancelled meanwhile."""
        await close_quietly(self._ws)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
