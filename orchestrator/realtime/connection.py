"""One `/v1/realtime` WebSocket: client events in, the session's events out.

Receive, send and the session run under one TaskGroup, so none can stop unseen. Bad
input never ends the connection: each malformed or unsupported event is answered with an
`error` event naming the offending `event_id`. A fault of ours (any exception in a part)
is logged, reported as a `server_error` event, and the connection is closed with 1011;
a client over its event budget gets `rate_limit_exceeded` and 1008. Either way, what was
queued for the client is sent first.
"""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
from fastapi import WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from kit.audio import SAMPLE_RATE
from kit.ratelimit import POLICY_VIOLATION, MessageBudget, RateLimitExceeded
from orchestrator.auth import accepted_subprotocol
from orchestrator.pipeline.backends import Backends
from orchestrator.pipeline.events import SessionEvent
from orchestrator.pipeline.history import History
from orchestrator.pipeline.session import VoiceSession
from orchestrator.realtime.client_events import (
    ConversationItemCreate,
    ConversationItemDelete,
    ConversationItemRetrieve,
    ConversationItemTruncate,
    EventError,
    InputAudioBufferAppend,
    InputAudioBufferClear,
    InputAudioBufferCommit,
    ResponseCancel,
    ResponseCreate,
    SessionUpdate,
    parse_client_event,
)
from orchestrator.realtime.inbound import apply_session_update, pipeline_config, response_request
from orchestrator.realtime.inbound_audio import float32_audio, pcm16_audio
from orchestrator.realtime.inbound_items import pipeline_item
from orchestrator.realtime.outbound import ServerEvents
from orchestrator.realtime.server_events import ErrorEvent, SessionCreated, SessionUpdated
from orchestrator.realtime.server_items import ServerEvent
from orchestrator.realtime.session_model import Session, TurnDetection
from orchestrator.settings import OrchestratorSettings

logger = logging.getLogger(__name__)

EXTENSIONS = "unmute_slurm"  # `?extensions=unmute_slurm`: send this project's own events too
BURST_S = 5.0  # audio a client may send ahead of real time before the rate limit applies


class ClientLeft(Exception):
    """The client closed the WebSocket: the normal end of a connection."""


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


def _leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


class RealtimeConnection:
    """Owns one client's WebSocket and its `VoiceSession`."""

    def __init__(self, ws: WebSocket, backends: Backends, settings: OrchestratorSettings) -> None:
        self.ws = ws
        self.settings = settings
        self.outbox: asyncio.Queue[ServerEvent] = asyncio.Queue()
        self.events = ServerEvents(extensions=EXTENSIONS in ws.query_params.getlist("extensions"))
        history = History(max_turns=settings.history_turns, max_tokens=settings.history_tokens)
        self.view = Session(max_output_tokens=settings.max_output_tokens)  # what the client sees
        self.view.audio.output.voice = settings.voice
        # semantic_vad by default where an end-of-turn model judges the pauses.
        kind = settings.turn_detection if backends.turn_model is not None else "server_vad"
        self.view.audio.input.turn_detection = TurnDetection(type=kind)
        self.session = VoiceSession(backends, self._emit, pipeline_config(self.view), history)
        self.view.id = self.session.id
        self.rate = AudioRate(settings.max_realtime_factor)
        self.budget = MessageBudget(settings.max_events_per_second, burst=2 * settings.max_events_per_second)

    def _emit(self, event: SessionEvent) -> None:
        for server_event in self.events.translate(event):
            self.outbox.put_nowait(server_event)

    async def run(self) -> None:
        """Serve until the client leaves or a part fails; every task is done when this returns."""
        await self.ws.accept(subprotocol=accepted_subprotocol(self.ws.scope.get("subprotocols") or []))
        self.outbox.put_nowait(SessionCreated(session=self.view.model_copy(deep=True)))
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._send_loop(), name=f"send-{self.session.id}")
                group.create_task(self.session.run(), name=f"session-{self.session.id}")
                # Receiving is the group's body, not a third task: Python 3.11's TaskGroup
                # leaves its owner marked as cancelled when a task fails after the body
                # has ended, and Starlette then treats the whole connection as cancelled.
                await self._receive_loop()
        except* ClientLeft:
            pass
        except* RateLimitExceeded as exceeded:
            await self._close(ErrorEvent.of("rate_limit_exceeded", str(_leaf(exceeded))), POLICY_VIOLATION)
        except* Exception as failure:
            await self._fail(_leaf(failure))

    async def _fail(self, failure: BaseException) -> None:
        """A fault of ours: log it, tell the client, and close with 1011 (never a bare drop)."""
        if isinstance(failure, WebSocketDisconnect) or self.ws.client_state is not WebSocketState.CONNECTED:
            return  # the client went away while we were sending: nothing failed
        logger.error("Realtime session failed", extra={"session": self.session.id}, exc_info=failure)
        message = f"internal error ({type(failure).__name__}); the session is closed"
        await self._close(ErrorEvent.of("server_error", message, kind="server_error"), 1011)

    async def _close(self, last: ErrorEvent, code: int) -> None:
        """Send what is queued, then `last`, then close with `code`."""
        if code == POLICY_VIOLATION:
            logger.warning(
                "closing a Realtime session over its event rate", extra={"session": self.session.id}
            )
        try:
            while not self.outbox.empty():
                await self.ws.send_text(self.outbox.get_nowait().wire())
            await self.ws.send_text(last.wire())
            await self.ws.close(code=code)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass  # the client is gone already

    async def _send_loop(self) -> None:
        while True:
            event = await self.outbox.get()
            await self.ws.send_text(event.wire())

    async def _receive_loop(self) -> None:
        """Client frames until it leaves; bad input is answered with an `error` event and skipped.

        Audio is bounded by the real-time factor (`AudioRate`); every other event, and every
        invalid one, spends the connection's event budget, which a flood exhausts: then
        `RateLimitExceeded` ends the connection with 1008.
        """
        await self.session.running.wait()
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                raise ClientLeft
            try:
                if message.get("bytes") is not None:
                    await self._append(float32_audio(message["bytes"], self.settings.max_append_bytes))
                else:
                    await self._dispatch(message.get("text") or "")
            except EventError as error:
                self.budget.spend()
                self.outbox.put_nowait(ErrorEvent.of(error.code, str(error), error.event_id, error.param))

    async def _dispatch(self, text: str) -> None:
        event = parse_client_event(text, self.settings.max_append_bytes)
        if isinstance(event, InputAudioBufferAppend):
            await self._append(pcm16_audio(event.audio, self.settings.max_append_bytes, event.event_id))
            return
        self.budget.spend()
        limit = self.settings.max_append_bytes
        if isinstance(event, SessionUpdate):
            apply_session_update(self.view, event.session, event.event_id)
            self.session.configure(pipeline_config(self.view))
            self.outbox.put_nowait(SessionUpdated(session=self.view.model_copy(deep=True)))
        elif isinstance(event, InputAudioBufferCommit):
            self.session.commit()
        elif isinstance(event, InputAudioBufferClear):
            self.session.clear()
        elif isinstance(event, ResponseCreate):
            request = response_request(event.response, self.view, limit, event.event_id)
            self.session.create_response(request, event.event_id)
        elif isinstance(event, ResponseCancel):
            await self.session.cancel_response(event.response_id, event.event_id)
        elif isinstance(event, ConversationItemTruncate):
            self.session.truncate(event.item_id, event.audio_end_ms, event.event_id)
        elif isinstance(event, ConversationItemRetrieve):
            item = self.session.history.get(event.item_id)
            self.outbox.put_nowait(self.events.retrieve(event.item_id, item, event.event_id))
        elif isinstance(event, ConversationItemCreate):
            item, audio = pipeline_item(event.item, limit, event.event_id)
            self.session.create_item(item, event.previous_item_id, event.event_id, audio)
        elif isinstance(event, ConversationItemDelete):
            self.session.delete_item(event.item_id, event.event_id)

    async def _append(self, pcm: np.ndarray) -> None:
        delay = self.rate.delay_for(pcm.size / SAMPLE_RATE)
        if delay > 0:
            if not self.rate.warned:
                self.rate.warned = True
                factor = self.settings.max_realtime_factor
                what = f"audio is arriving faster than {factor:.0f}x real time; reading is slowed down"
                what += " (nothing is dropped)"
                self.outbox.put_nowait(ErrorEvent.of("rate_limited", what))
            await asyncio.sleep(delay)
        await self.session.append_audio(pcm)
