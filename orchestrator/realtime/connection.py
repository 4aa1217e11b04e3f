"""One `/v1/realtime` WebSocket: validate every client event, feed the session, send its events.

Bad input never ends the connection: each malformed or unsupported event is answered
with an `error` event naming the offending `event_id`, and the session goes on. A fault
of our own (a bug) is logged and reported as a `server_error` event, and the connection
is closed with 1011: never dropped without a close frame.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import time
from typing import Any

import numpy as np
from fastapi import WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from orchestrator.pipeline.session import Backends, VoiceSession
from orchestrator.realtime.events import (
    ConversationItemTruncate,
    EventError,
    InputAudioBufferAppend,
    InputAudioBufferClear,
    InputAudioBufferCommit,
    ResponseCancel,
    ResponseCreate,
    ResponseParams,
    SessionUpdate,
    error_event,
    parse_client_event,
    server_event,
)
from orchestrator.settings import OrchestratorSettings
from services.common.audio import SAMPLE_RATE
from services.common.ratelimit import POLICY_VIOLATION, MessageBudget, RateLimitExceeded

logger = logging.getLogger(__name__)

BURST_S = 5.0  # audio a client may send ahead of real time before the rate limit applies


class AudioRate:
    """Allows `factor` x real time after a burst; beyond, appends wait (nothing is dropped)."""

    def __init__(self, factor: float) -> None:
        self.factor = factor
        self.started = time.monotonic()
        self.received_s = 0.0
        self.warned = False

    def delay_for(self, seconds: float) -> float:
        """Seconds to wait before accepting `seconds` more audio."""
        self.received_s += seconds
        allowed = BURST_S + self.factor * (time.monotonic() - self.started)
        return max(0.0, (self.received_s - allowed) / self.factor)


def pcm16_to_float(data: bytes) -> np.ndarray:
    """Little-endian PCM16 (the Realtime API's `audio/pcm`) -> float32 in [-1, 1]."""
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


class RealtimeConnection:
    """Owns one client's WebSocket and its `VoiceSession`."""

    def __init__(self, ws: WebSocket, backends: Backends, settings: OrchestratorSettings) -> None:
        self.ws = ws
        self.settings = settings
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.session = VoiceSession(
            backends,
            self.outbox.put_nowait,
            default_voice=settings.voice,
            max_output_tokens=settings.max_output_tokens,
            history_turns=settings.history_turns,
            history_tokens=settings.history_tokens,
        )
        self.rate = AudioRate(settings.max_realtime_factor)
        self.budget = MessageBudget(settings.max_events_per_second, burst=2 * settings.max_events_per_second)

    async def run(self) -> None:
        """Serve until the client leaves or a task of ours fails; then stop every task of the session."""
        subprotocols = self.ws.scope.get("subprotocols") or []
        await self.ws.accept(subprotocol="realtime" if "realtime" in subprotocols else None)
        self.outbox.put_nowait(server_event("session.created", session=self.session.session.model_dump()))
        receiver = asyncio.create_task(self._receive_loop(), name=f"receive-{self.session.id}")
        sender = asyncio.create_task(self._send_loop(), name=f"send-{self.session.id}")
        stt = asyncio.create_task(self.session.run(), name=f"stt-{self.session.id}")
        failure: BaseException | None = None
        try:
            done, _ = await asyncio.wait({receiver, sender, stt}, return_when=asyncio.FIRST_COMPLETED)
            failure = next((t.exception() for t in done if not t.cancelled() and t.exception()), None)
        finally:
            # All at once: the session counts as open until its backend streams are closed.
            for task in (receiver, stt, sender):
                task.cancel()
            await self.session.aclose()
            for task in (receiver, stt, sender):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        client_gone = self.ws.client_state is not WebSocketState.CONNECTED
        if isinstance(failure, RateLimitExceeded):
            await self._close_for_rate(failure)
        elif failure is not None and not client_gone and not isinstance(failure, WebSocketDisconnect):
            await self._fail(failure)

    async def _close_for_rate(self, exceeded: RateLimitExceeded) -> None:
        """The client broke the event budget: say so and close with 1008 (its fault, not ours)."""
        logger.warning("closing a Realtime session over its event rate", extra={"session": self.session.id})
        with contextlib.suppress(Exception):
            await self.ws.send_text(json.dumps(error_event("rate_limit_exceeded", str(exceeded))))
            await self.ws.close(code=POLICY_VIOLATION)

    async def _fail(self, failure: BaseException) -> None:
        """A fault of ours: log it, tell the client, and close with 1011 (never a bare drop)."""
        logger.error("Realtime session failed", extra={"session": self.session.id}, exc_info=failure)
        message = f"internal error ({type(failure).__name__}); the session is closed"
        with contextlib.suppress(Exception):  # the client may be gone by now
            await self.ws.send_text(json.dumps(error_event("server_error", message, kind="server_error")))
            await self.ws.close(code=1011)

    async def _send_loop(self) -> None:
        while True:
            await self.ws.send_text(json.dumps(await self.outbox.get()))

    def _reject(self, error: EventError) -> None:
        self.outbox.put_nowait(error_event(error.code, str(error), error.event_id, error.param))

    async def _receive_loop(self) -> None:
        """Client frames until it leaves; bad input is answered with an `error` event and skipped.

        Audio is bounded by the real-time factor (`AudioRate`); every other event, and every
        invalid one, spends the connection's event budget, which a flood exhausts: then
        `RateLimitExceeded` ends the loop and the connection is closed with 1008.
        """
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            try:
                if message.get("bytes") is not None:
                    await self._append(self._binary_audio(message["bytes"]))
                else:
                    await self._dispatch(message.get("text") or "")
            except EventError as error:
                self.budget.spend()
                self._reject(error)

    def _binary_audio(self, data: bytes) -> np.ndarray:
        """The original design's binary frames: raw float32 24 kHz samples."""
        if len(data) > self.settings.max_append_bytes:
            size = f"binary frame of {len(data)} bytes; the limit is {self.settings.max_append_bytes}"
            raise EventError("audio_too_large", size)
        if len(data) % 4:
            raise EventError(
                "invalid_audio",
                f"binary frames are float32 samples; {len(data)} bytes is not a multiple of 4",
            )
        pcm = np.frombuffer(data, dtype="<f4")
        if not np.isfinite(pcm).all():
            raise EventError("invalid_audio", "binary frame contains NaN or infinite samples")
        return np.clip(pcm, -1.0, 1.0)

    async def _dispatch(self, text: str) -> None:
        event = parse_client_event(text, self.settings.max_append_bytes)
        if isinstance(event, InputAudioBufferAppend):
            await self._append(self._decode_append(event))
            return
        self.budget.spend()
        if isinstance(event, SessionUpdate):
            self.session.update(event.session.model_dump(exclude_unset=True))
        elif isinstance(event, InputAudioBufferCommit):
            self.session.commit()
        elif isinstance(event, InputAudioBufferClear):
            self.session.clear()
        elif isinstance(event, ResponseCreate):
            params = event.response or ResponseParams()
            self.session.create_response(params.model_dump(exclude_unset=True), event.event_id)
        elif isinstance(event, ResponseCancel):
            await self.session.cancel_response(event.response_id, event.event_id)
        elif isinstance(event, ConversationItemTruncate):
            self.session.truncate(event.item_id, event.audio_end_ms, event.event_id)

    def _decode_append(self, event: InputAudioBufferAppend) -> np.ndarray:
        if len(event.audio) > self.settings.max_append_bytes:
            limit = self.settings.max_append_bytes
            size = f"append of {len(event.audio)} base64 characters; the limit is {limit}"
            raise EventError("audio_too_large", size, event.event_id, "audio")
        try:
            data = base64.b64decode(event.audio, validate=True)
        except (binascii.Error, ValueError):
            raise EventError("invalid_audio", "audio is not valid base64", event.event_id, "audio") from None
        if len(data) % 2:
            raise EventError(
                "invalid_audio",
                f"PCM16 needs an even number of bytes, got {len(data)}",
                event.event_id,
                "audio",
            )
        return pcm16_to_float(data)

    async def _append(self, pcm: np.ndarray) -> None:
        delay = self.rate.delay_for(pcm.size / SAMPLE_RATE)
        if delay > 0:
            if not self.rate.warned:
                self.rate.warned = True
                self.outbox.put_nowait(
                    error_event(
                        "rate_limited",
                        f"audio is arriving faster than {self.settings.max_realtime_factor:.0f}x real time; "
                        "reading is slowed down (nothing is dropped)",
                    )
                )
            await asyncio.sleep(delay)
        await self.session.append_audio(pcm)
