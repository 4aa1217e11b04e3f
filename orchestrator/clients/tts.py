"""One assistant turn's stream to the TTS service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlencode

import websockets

from orchestrator.clients.errors import BackendUnavailable
from orchestrator.clients.moshi_ws import open_stream
from services.common.protocol import (
    TTS_SERVER_MESSAGES,
    Eos,
    MessageParser,
    ProtocolError,
    TextIn,
    WireMessage,
)

SERVICE = "TTS"
_parser = MessageParser(TTS_SERVER_MESSAGES, max_bytes=16 * 1024 * 1024)


class TtsStream:
    """Words out, `Audio` frames and timed `Text` words in, until the server closes."""

    def __init__(self, ws) -> None:
        self._ws = ws

    @classmethod
    async def open(cls, base_url: str, api_key: str, voice: str | None) -> TtsStream:
        """Connect to ``{base_url}/api/tts_streaming`` with the voice and wait for `Ready`."""
        query = {"format": "PcmMessagePack", **({"voice": voice} if voice else {})}
        return cls(await open_stream(SERVICE, f"{base_url}/api/tts_streaming?{urlencode(query)}", api_key))

    async def send_word(self, word: str) -> None:
        await self._send(TextIn(text=word).pack())

    async def send_eos(self) -> None:
        await self._send(Eos().pack())

    async def _send(self, data: bytes) -> None:
        try:
            await self._ws.send(data)
        except websockets.ConnectionClosed as exc:
            raise BackendUnavailable(SERVICE, f"connection lost ({exc})") from None

    async def events(self) -> AsyncIterator[WireMessage]:
        """Messages until the server's clean close; an abnormal close raises `BackendUnavailable`."""
        try:
            async for raw in self._ws:
                try:
                    yield _parser.parse(raw)
                except ProtocolError:
                    continue
        except websockets.ConnectionClosedError as exc:
            raise BackendUnavailable(SERVICE, f"connection lost ({exc})") from None

    async def close(self) -> None:
        await self._ws.close()
