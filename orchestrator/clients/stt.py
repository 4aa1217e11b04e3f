"""The session's stream to the STT service."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import websockets

from orchestrator.clients.errors import BackendUnavailable
from orchestrator.clients.moshi_ws import open_stream
from services.common.protocol import (
    STT_SERVER_MESSAGES,
    AudioIn,
    MarkerIn,
    MessageParser,
    ProtocolError,
    WireMessage,
)

SERVICE = "STT"
_parser = MessageParser(STT_SERVER_MESSAGES, max_bytes=16 * 1024 * 1024)


class SttStream:
    """Audio and markers out; `Word`, `EndWord`, `Step`, `Marker`, `Error` in."""

    def __init__(self, ws) -> None:
        self._ws = ws

    @classmethod
    async def open(cls, base_url: str, api_key: str) -> SttStream:
        """Connect to ``{base_url}/api/asr-streaming`` and wait for `Ready`."""
        return cls(await open_stream(SERVICE, f"{base_url}/api/asr-streaming", api_key))

    async def send_audio(self, pcm: np.ndarray) -> None:
        """Send float32 24 kHz samples."""
        try:
            await self._ws.send(AudioIn(pcm=pcm).pack())
        except websockets.ConnectionClosed as exc:
            raise BackendUnavailable(SERVICE, f"connection lost ({exc})") from None

    async def send_marker(self, marker_id: int) -> None:
        """Ask for a flush; the `Marker` comes back once all audio before it is transcribed."""
        try:
            await self._ws.send(MarkerIn(id=marker_id).pack())
        except websockets.ConnectionClosed as exc:
            raise BackendUnavailable(SERVICE, f"connection lost ({exc})") from None

    async def events(self) -> AsyncIterator[WireMessage]:
        """Messages until the connection ends; a lost connection raises `BackendUnavailable`."""
        try:
            async for raw in self._ws:
                try:
                    yield _parser.parse(raw)
                except ProtocolError:
                    continue  # a newer server's extra message types are not ours to fail on
        except websockets.ConnectionClosedError as exc:
            raise BackendUnavailable(SERVICE, f"connection lost ({exc})") from None
        raise BackendUnavailable(SERVICE, "the STT service closed the stream")

    async def close(self) -> None:
        await self._ws.close()
