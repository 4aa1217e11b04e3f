"""One conversation: audio in -> STT -> the user's turn -> a reply (LLM -> TTS) -> audio out.

`VoiceSession` ties the parts together: an `SttLink` kept up for the session's life, the
`UserTurn` being built from its words and pause probabilities, and one `ResponseRun` at
a time. It emits domain events (`pipeline.events`); the wire format is not its business.
Everything it starts runs under its `TaskGroup`: a backend failure becomes a `Problem`
and the session goes on; any other exception ends the session, and its owner reports it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np

from orchestrator.clients.errors import BackendError
from orchestrator.pipeline.backends import Backends
from orchestrator.pipeline.config import ResponseRequest, SessionConfig
from orchestrator.pipeline.events import (
    InputCleared,
    ItemTruncated,
    Problem,
    SessionEvent,
    SpeechStarted,
    SpeechStopped,
    TranscriptDelta,
    UserTurnCommitted,
    UserTurnTranscribed,
    new_id,
)
from orchestrator.pipeline.history import DEFAULT_SYSTEM_PROMPT, History
from orchestrator.pipeline.latency import TurnLatency
from orchestrator.pipeline.response_run import ResponseRun
from orchestrator.pipeline.stt_link import SttLink
from orchestrator.pipeline.turns import TurnEvent
from orchestrator.pipeline.user_turn import UserTurn
from services.common.protocol import Error, Step, WireMessage, Word

KEPT_RESPONSES = 32  # truncation only concerns recent items


class VoiceSession:
    """The pipeline of one Realtime connection; `run()` is its life."""

    def __init__(
        self,
        backends: Backends,
        emit: Callable[[SessionEvent], None],
        config: SessionConfig,
        history: History,
    ) -> None:
        self.id = new_id("sess")
        self.config = config
        self.history = history
        self._backends = backends
        self._emit = emit
        self.turn = UserTurn()
        self.stt = SttLink(backends, self._on_stt, self._stt_down, self.id)
        self._tasks: asyncio.TaskGroup | None = None
        self.running = asyncio.Event()  # requests are taken once the TaskGroup is up
        self._turn_task: asyncio.Task[None] | None = None
        self._speech_end: float | None = None
        self._last_item: str | None = None  # the conversation's latest item
        self.response: ResponseRun | None = None
        self._responses: dict[str, ResponseRun] = {}  # by item id
        self.configure(config)

    async def run(self) -> None:
        """Serve until cancelled; every task of the session is done when this returns."""
        async with asyncio.TaskGroup() as tasks:
            self._tasks = tasks
            self.running.set()
            try:
                await self.stt.run()
            finally:
                self.running.clear()  # no new task once the group is being torn down

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None] | None:
        if self._tasks is None or not self.running.is_set():
            coro.close()  # the session is ending: no new LLM request or TTS stream
            return None
        return self._tasks.create_task(coro, name=f"{name}-{self.id}")

    def _stt_down(self, exc: BackendError) -> None:
        consequence = "speech recognition is paused; it resumes when the service is back"
        self._emit(Problem(exc.event_code, f"{exc} - {consequence}"))

    # ---- client requests ----------------------------------------------------------------

    def configure(self, config: SessionConfig) -> None:
        """Apply new settings; a reply in progress keeps the ones it started with."""
        self.config = config
        self.history.system_prompt = config.instructions or DEFAULT_SYSTEM_PROMPT
        if config.turn_detection is not None:
            self.turn.configure(config.turn_detection)

    async def append_audio(self, pcm: np.ndarray) -> None:
        """Client audio, on to the STT."""
        self.turn.heard_audio(pcm.size)
        await self.stt.send(pcm)

    def commit(self) -> None:
        """Manual end of turn (`input_audio_buffer.commit`)."""
        self._end_turn()

    def clear(self) -> None:
        """Forget the user's unfinished turn."""
        self.turn.clear()
        self._emit(InputCleared())

    def create_response(self, request: ResponseRequest, client_event_id: str | None = None) -> None:
        """`response.create`: answer once the committed turn's transcript is final.

        One response at a time, as in OpenAI's API: while one runs, another is refused.
        """
        if self.response is not None and self.response.generating():
            what = "a response is already in progress; cancel it first (response.cancel)"
            self._emit(
                Problem(
                    "conversation_already_has_active_response", what, "invalid_request_error", client_event_id
                )
            )
            return
        self._start_response(request, TurnLatency(speech_end=TurnLatency.now()))

    async def cancel_response(
        self, response_id: str | None = None, client_event_id: str | None = None
    ) -> None:
        """`response.cancel`: stop the reply (no flush: the client asked and stops its playback)."""
        response = self.response
        if response is None or not response.generating() or response_id not in (None, response.id):
            what = f"response {response_id!r} is" if response_id else "no response is"
            self._emit(
                Problem(
                    "response_cancel_not_active",
                    f"{what} in progress",
                    "invalid_request_error",
                    client_event_id,
                )
            )
            return
        response.cancel_reason = "client_cancelled"
        await response.interrupt(flush=False)

    def truncate(self, item_id: str, audio_end_ms: int, client_event_id: str | None = None) -> None:
        """Keep in the history only the words of `item_id` whose audio had started by `audio_end_ms`."""
        response = self._responses.get(item_id)
        if response is None:
            what = f"no assistant item {item_id!r}"
            self._emit(Problem("item_not_found", what, "invalid_request_error", client_event_id, "item_id"))
            return
        heard = response.heard_text(audio_end_ms)
        self.history.fill(item_id, heard)
        self._emit(ItemTruncated(item_id, audio_end_ms, heard))

    # ---- the user's side ----------------------------------------------------------------

    def _on_stt(self, message: WireMessage) -> None:
        detect = self.config.turn_detection is not None
        if isinstance(message, Step) and detect:
            event = self.turn.on_step(message.prs)
            if event is TurnEvent.SPEECH_STARTED:
                self._speech_started()
            elif event is TurnEvent.END_OF_TURN:
                self._speech_end = TurnLatency.now() - self.turn.quiet_s()
                self._end_turn()
        elif isinstance(message, Word):
            item = self.turn.item_id
            if self.turn.on_word(message.text, detect) is TurnEvent.SPEECH_STARTED:
                self._speech_started()
            self._emit(TranscriptDelta(item, message.text + " "))
        elif isinstance(message, Error):
            self._emit(Problem("stt_error", f"STT: {message.message}"))

    def _speech_started(self) -> None:
        self._emit(SpeechStarted(self.turn.item_id, int(self.turn.input_ms)))
        detection = self.config.turn_detection
        if detection is not None and detection.interrupt_response and self._assistant_speaking():
            assert self.response is not None
            self._spawn(self.response.interrupt(flush=True), "interrupt")

    def _assistant_speaking(self) -> bool:
        return self.response is not None and self.response.speaking()

    def _end_turn(self) -> None:
        if self._turn_task is not None and not self._turn_task.done():
            return  # already finishing this turn
        turn = self.turn.commit()
        if turn.was_speaking:  # OpenAI pairs it with speech_started: none without turn detection
            self._emit(SpeechStopped(turn.item_id, turn.audio_end_ms))
        # The turn's place in the conversation is taken now; its words come after the flush.
        self.history.reserve("user", turn.item_id)
        previous, self._last_item = self._last_item, turn.item_id
        self._emit(UserTurnCommitted(turn.item_id, previous))
        latency = TurnLatency(speech_end=self._speech_end or TurnLatency.now())
        self._speech_end = None
        self._turn_task = self._spawn(
            self._finish_turn(turn.item_id, previous, turn.audio_s, latency), "turn"
        )

    async def _finish_turn(
        self, item_id: str, previous: str | None, audio_s: float, latency: TurnLatency
    ) -> None:
        try:
            await self.stt.flush()
        except BackendError as exc:
            self._emit(Problem(exc.event_code, f"{exc} - using the words so far"))
        transcript = self.turn.take_transcript()
        latency.transcript = TurnLatency.now()
        self.history.fill(item_id, transcript)
        self._emit(UserTurnTranscribed(item_id, previous, transcript, audio_s))
        detection = self.config.turn_detection
        if transcript and detection is not None and detection.create_response:
            self._start_response(ResponseRequest(), latency)
        # Noise or silence gets no answer; without turn detection the client asks (response.create).

    # ---- the assistant's side ------------------------------------------------------------

    def _start_response(self, request: ResponseRequest, latency: TurnLatency) -> None:
        """Begin a reply now; it reads the history once the turn being transcribed and the
        reply it replaces are done."""
        if not self.running.is_set():
            return
        after: list[asyncio.Task[None]] = []
        if self._turn_task is not None and not self._turn_task.done():
            after.append(self._turn_task)
        if self.response is not None and self.response.speaking():
            interrupt = self._spawn(self.response.interrupt(flush=True), "interrupt")
            after += [interrupt] if interrupt is not None else []
        run = ResponseRun(
            request,
            config=self.config,
            backends=self._backends,
            history=self.history,
            emit=self._emit,
            latency=latency,
            session_id=self.id,
        )
        run.begin(self._last_item)
        self._last_item = run.item_id
        self.response = run
        self._responses[run.item_id] = run
        while len(self._responses) > KEPT_RESPONSES:
            self._responses.pop(next(iter(self._responses)))
        run.task = self._spawn(run.run(after), run.id)
