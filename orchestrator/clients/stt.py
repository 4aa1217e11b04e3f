"""The session's stream to the STT service."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np

from kit.protocol import STT_SERVER_MESSAGES, MarkerIn, MessageParser, WireMessage, pack_audio
from orchestrator.clients.errors import BackendUnavailable
from orchestrator.clients.moshi_ws import MoshiStream, open_stream


class SttStream(MoshiStream):
    """Audio and markers out; `Word`, `EndWord`, `Step`, `Marker`, `Error` in."""

    service = "STT"
    parser = MessageParser(STT_SERVER_MESSAGES, max_bytes=16 * 1024 * 1024)

    @classmethod
    async def open(cls, base_url: str, api_key: str) -> SttStream:
        """Connect to ``{base_url}/api/asr-streaming`` and wait for `Ready`."""
        return cls(await open_stream(cls.service, f"{base_url}/api/asr-streaming", api_key))

    async def send_audio(self, pcm: np.ndarray) -> None:
        """Send float32 24 kHz samples (decoded and checked by the caller; the STT checks them again)."""
        await self._send(pack_audio(pcm))

    async def send_marker(self, marker_id: int) -> None:
        """Ask for a flush; the `Marker` comes back once all audio before it is transcribed."""
        await self._send(MarkerIn(id=marker_id).pack())

    async def events(self) -> AsyncIterator[WireMessage]:
        """As the base, but the STT never ends a stream on its own: an end is a loss."""
        async for message in super().events():
            yield message
        raise BackendUnavailable(self.service, "the STT service closed the stream")
