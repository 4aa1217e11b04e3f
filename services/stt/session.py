"""One `/api/asr-streaming` WebSocket: auth, slot, then a receive loop and a send loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import WebSocket, WebSocketDisconnect
from starlette.types import Message

from kit.audio import FRAME_SIZE
from kit.protocol import (
    STT_CLIENT_MESSAGES,
    AudioIn,
    Error,
    MarkerIn,
    MessageParser,
    ProtocolError,
    Ready,
    WireMessage,
)
from kit.ratelimit import POLICY_VIOLATION, MessageBudget, RateLimitExceeded
from services.stt import metrics
from services.stt.batcher import Slot, SttBatcher
from services.stt.settings import SttSettings

logger = logging.getLogger(__name__)

NO_FREE_CHANNELS = "no free channels"


class AsrSession:
    """A client's stream, from `Ready` to the slot being handed back."""

    def __init__(self, ws: WebSocket, batcher: SttBatcher, settings: SttSettings) -> None:
        self.ws = ws
        self.batcher = batcher
        self.settings = settings
        self.parser = MessageParser(STT_CLIENT_MESSAGES, settings.max_message_bytes)
        self.budget = MessageBudget(settings.max_messages_per_second)
        self.close_code = 1000

    async def run(self) -> None:
        """Serve the stream until the client leaves (the server never closes first)."""
        await self.ws.accept()
        slot = self.batcher.open()
        if slot is None:
            await self.ws.send_bytes(Error(message=NO_FREE_CHANNELS).pack())
            await self.ws.close()
            return
        await self.ws.send_bytes(Ready().pack())
        sender = asyncio.create_task(self._send_loop(slot), name=f"stt-send-{slot.index}")
        try:
            await self._receive_loop(slot)
        except WebSocketDisconnect:
            pass
        finally:
            self.batcher.close(slot)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(sender, timeout=2.0)
            if not sender.done():
                sender.cancel()

    def _reject(self, slot: Slot, reason: str, message: str) -> None:
        metrics.PROTOCOL_ERRORS.labels(reason).inc()
        slot.outbox.put_nowait(Error(message=message))

    async def _receive_loop(self, slot: Slot) -> None:
        while True:
            try:
                msg = await asyncio.wait_for(self.ws.receive(), timeout=self.settings.idle_timeout_s)
            except TimeoutError:
                slot.outbox.put_nowait(
                    Error(message=f"no message for {self.settings.idle_timeout_s:.0f} s, closing")
                )
                return
            if msg["type"] == "websocket.disconnect":
                return
            try:
                parsed = self._parse(slot, msg)
            except RateLimitExceeded as exc:
                self._reject(slot, "rate", str(exc))
                self.close_code = POLICY_VIOLATION
                return
            if parsed is None:
                continue
            if isinstance(parsed, AudioIn):
                self.batcher.push_audio(slot, parsed.pcm)
            elif isinstance(parsed, MarkerIn):
                self.batcher.push_marker(slot, parsed.id)
            # Every kind passes the same gate: the socket is read at once until the stream
            # is max_buffered_s ahead of the model (so pings are answered), then waits.
            await slot.wait_for_space()

    def _parse(self, slot: Slot, msg: Message) -> WireMessage | None:
        """The client's message, or None once a bad one has been answered with an `Error`.

        Audio of a frame or more is bounded by the read-ahead limit, not by the message
        budget (a file sent at full speed is ~12 messages per second of audio); every
        other message spends it.
        """
        data = msg.get("bytes")
        if data is None:
            self.budget.spend()
            self._reject(
                slot,
                "text_frame",
                "text frames are not part of this protocol: send msgpack in binary frames",
            )
            return None
        try:
            parsed = self.parser.parse(data)
        except ProtocolError as exc:
            self.budget.spend()
            self._reject(slot, "invalid", str(exc))
            return None
        if not (isinstance(parsed, AudioIn) and parsed.pcm.size >= FRAME_SIZE):
            self.budget.spend()
        return parsed

    async def _send_loop(self, slot: Slot) -> None:
        while (message := await slot.outbox.get()) is not None:
            await self.ws.send_bytes(message.pack())
        # The slot was closed: the client left, an idle timeout, the rate limit, or shutdown.
        with contextlib.suppress(Exception):
            await self.ws.close(code=self.close_code)
