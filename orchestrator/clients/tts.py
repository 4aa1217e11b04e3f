"""One assistant turn's stream to the TTS service."""

from __future__ import annotations

from urllib.parse import urlencode

from kit.protocol import TTS_SERVER_MESSAGES, Eos, MessageParser, TextIn
from orchestrator.clients.moshi_ws import MoshiStream, open_stream


class TtsStream(MoshiStream):
    """Words out, `Audio` frames and timed `Text` words in, until the server closes."""

    service = "TTS"
    parser = MessageParser(TTS_SERVER_MESSAGES, max_bytes=16 * 1024 * 1024)

    @classmethod
    async def open(cls, base_url: str, api_key: str, voice: str | None) -> TtsStream:
        """Connect to ``{base_url}/api/tts_streaming`` with the voice and wait for `Ready`."""
        query = {"format": "PcmMessagePack", **({"voice": voice} if voice else {})}
        return cls(
            await open_stream(cls.service, f"{base_url}/api/tts_streaming?{urlencode(query)}", api_key)
        )

    async def send_word(self, word: str) -> None:
        await self._send(TextIn(text=word).pack())

    async def send_eos(self) -> None:
        await self._send(Eos().pack())
