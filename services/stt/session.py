"""One `/api/asr-streaming` WebSocket: what the STT does with each client message.

The stream's life (slot, `Ready`, send and receive loops, idle timeout, message budget) is
the shared skeleton's, `services.common.stream_session`.
"""

from __future__ import annotations

from fastapi import WebSocket
from starlette.types import Message

from kit.audio import FRAME_SIZE
from kit.protocol import STT_CLIENT_MESSAGES, AudioIn, MarkerIn, ProtocolError, WireMessage
from services.common.stream_session import StreamSession
from services.stt import metrics
from services.stt.batcher import SttBatcher, SttSlot
from services.stt.settings import SttSettings


class SttSession(StreamSession[SttSlot]):
    """A client's stream: its audio and Markers go to the batcher; the server never closes first
    (except on an idle timeout, the rate limit, a failed step or shutdown)."""

    def __init__(self, ws: WebSocket, batcher: SttBatcher, settings: SttSettings) -> None:
        super().__init__(ws, batcher, settings, STT_CLIENT_MESSAGES, metrics.STREAMS)
        self.batcher = batcher

    async def handle(self, slot: SttSlot, msg: Message) -> None:
        """Queue audio or a Marker for the model, then wait while the stream is too far ahead."""
        parsed = self._parse(slot, msg)
        if parsed is None:
            return
        if isinstance(parsed, AudioIn):
            self.batcher.push_audio(slot, parsed.pcm)
        elif isinstance(parsed, MarkerIn):
            self.batcher.push_marker(slot, parsed.id)
        # Every kind passes the same gate: the socket is read at once until the stream
        # is max_buffered_s ahead of the model (so pings are answered), then waits.
        await slot.wait_for_space()

    def _parse(self, slot: SttSlot, msg: Message) -> WireMessage | None:
        """The client's message, or None once a bad one has been answered with an `Error`.

        Audio of a frame or more is bounded by the read-ahead limit, not by the message
        budget (a file sent at full speed is ~12 messages per second of audio); every
        other message spends it.
        """
        data = msg.get("bytes")
        if data is None:
            self.budget.spend()
            self.reject(
                slot,
                "text_frame",
                "text frames are not part of this protocol: send msgpack in binary frames",
            )
            return None
        try:
            parsed = self.parser.parse(data)
        except ProtocolError as exc:
            self.budget.spend()
            self.reject(slot, "invalid", str(exc))
            return None
        if not (isinstance(parsed, AudioIn) and parsed.pcm.size >= FRAME_SIZE):
            self.budget.spend()
        return parsed
