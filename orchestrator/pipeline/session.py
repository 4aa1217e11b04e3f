"""One conversation: audio in -> STT -> the user's turn -> a reply (LLM -> TTS) -> audio out.

`VoiceSession` ties the parts together: an `SttLink` kept up for the session's life, the
`UserTurn` being built from its words and pause probabilities (and, where there is one,
an end-of-turn model's verdict on each pause), `Preemption` for a reply prepared at a
likely end, `Replies` for the assistant's side, and `ItemRequests` for the items a client
creates and deletes itself. It emits domain events
(`pipeline.events`); the wire format is not its business. Everything it starts runs under
its `TaskGroup`: a backend failure becomes a `Problem` and the session goes on; any other
exception ends the session, and its owner reports it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

import numpy as np

from kit.protocol import Error, Step, WireMessage, Word
from orchestrator.clients.errors import BackendError
from orchestrator.pipeline.backends import Backends
from orchestrator.pipeline.config import ResponseRequest, SessionConfig
from orchestrator.pipeline.events import (
    IdleTimeout,
    InputCleared,
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
from orchestrator.pipeline.item_requests import ItemRequests
from orchestrator.pipeline.items import Item
from orchestrator.pipeline.latency import TurnLatency
from orchestrator.pipeline.preemption import Preemption, PreparedReply
from orchestrator.pipeline.replies import Replies
from orchestrator.pipeline.response_run import ResponseRun
from orchestrator.pipeline.stt_link import SttLink
from orchestrator.pipeline.turns import TurnEvent
from orchestrator.pipeline.user_turn import FinishedTurn, UserTurn, is_backchannel

IDLE_PROMPT = "(The user has said nothing for {seconds:.0f} s.)"


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
        self.history = history
        self._backends = backends
        self._emit = emit
        self.turn = UserTurn()
        self.stt = SttLink(backends, self._on_stt, self._stt_down, self.id)
        self.replies = Replies(backends, history, emit, self._spawn, self.id)
        self.preemption = Preemption(self.stt, self.turn, self.replies.new_run, self._spawn, emit)
        self.items = ItemRequests(backends, history, emit, self._spawn)
        self._tasks: asyncio.TaskGroup | None = None
        self.running = asyncio.Event()  # requests are taken once the TaskGroup is up
        self._turn_task: asyncio.Task[None] | None = None
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
        self.config = self.replies.config = config
        self.history.system_prompt = config.instructions or DEFAULT_SYSTEM_PROMPT
        if config.turn_detection is not None:
            self.turn.configure(config.turn_detection, use_model=self._backends.turn_model is not None)

    async def append_audio(self, pcm: np.ndarray) -> None:
        """Client audio, on to the STT."""
        self.turn.heard_audio(pcm)
        await self.stt.send(pcm)

    def commit(self) -> None:
        """Manual end of turn (`input_audio_buffer.commit`)."""
        self._end_turn()

    def clear(self) -> None:
        """Forget the user's unfinished turn."""
        self.preemption.drop()
        self.turn.clear()
        self._emit(InputCleared())

    def create_response(self, request: ResponseRequest, client_event_id: str | None = None) -> None:
        """`response.create`: answer once the committed turn's transcript is final."""
        if not self.running.is_set() or self.replies.refuses_another(client_event_id):
            return
        if request.context is not None:
            context = self.items.resolve(request.context, client_event_id)
            if context is None:
                return
            request = replace(request, context=context)
        run = self.replies.new_run(TurnLatency(speech_end=TurnLatency.now()), request=request)
        self._start_reply(run, interrupt=False)

    def create_item(
        self,
        item: Item,
        previous_item_id: str | None,
        client_event_id: str | None = None,
        audio: np.ndarray | None = None,
    ) -> None:
        """`conversation.item.create` (see `ItemRequests.create`)."""
        self.items.create(item, previous_item_id, client_event_id, audio)

    def delete_item(self, item_id: str, client_event_id: str | None = None) -> None:
        """`conversation.item.delete`."""
        self.items.delete(item_id, client_event_id)

    async def cancel_response(
        self, response_id: str | None = None, client_event_id: str | None = None
    ) -> None:
        """`response.cancel` (of the latest reply, or of `response_id`)."""
        await self.replies.cancel(response_id, client_event_id)

    def truncate(self, item_id: str, audio_end_ms: int, client_event_id: str | None = None) -> None:
        """`conversation.item.truncate`: the history keeps what was heard."""
        self.replies.truncate(item_id, audio_end_ms, client_event_id)

    # ---- the user's side ----------------------------------------------------------------

    def _on_stt(self, message: WireMessage) -> None:
        detection = self.config.turn_detection
        if isinstance(message, Step) and detection is not None:
            self._on_turn_event(self.turn.on_step(message.prs))
            if self.turn.interrupts():
                self._talked_over(word=False)
            busy = self.replies.speaking() or self._finishing() or self.preemption.current is not None
            if self.turn.idle(assistant_busy=busy):
                self._idle_timeout()
        elif isinstance(message, Word):
            item = self.turn.item_id
            # A word a flush brings out is the flushed turn's, and one spoken before the current
            # pause is the STT catching up: neither is new speech.
            speech = (
                detection is not None
                and not self.stt.flushing
                and not self.turn.spoken_before_pause(message.start_time, self.stt.heard_s)
            )
            event = self.turn.on_word(message.text, speech)
            self._emit(TranscriptDelta(item, message.text + " "))
            self._on_turn_event(event)
            if speech and self.turn.interrupts(message.text):
                self._talked_over(word=True)
        elif isinstance(message, Error):
            self._emit(Problem("stt_error", f"STT: {message.message}"))

    def _on_turn_event(self, event: TurnEvent | None) -> None:
        detection = self.config.turn_detection
        if event is TurnEvent.SPEECH_STARTED:
            self._emit(SpeechStarted(self.turn.item_id, int(self.turn.input_ms)))
        elif event is TurnEvent.PAUSE_STARTED and self._backends.turn_model is not None:
            self._spawn(self._judge_pause(), "judge")
        elif event is TurnEvent.LIKELY_END and detection is not None:
            if detection.preemptive and detection.create_response and not self.replies.speaking():
                self.preemption.prepare()
        elif event is TurnEvent.END_OF_TURN:
            self._end_turn(speech_end=TurnLatency.now() - self.turn.quiet_s())

    def _talked_over(self, *, word: bool) -> None:
        """Real speech (not a cough, a click or an "mm-hm"): it ends a reply held or playing."""
        self.preemption.user_went_on(word=word)
        detection = self.config.turn_detection
        if detection is not None and detection.interrupt_response and self.replies.speaking():
            self.replies.barge_in()

    async def _judge_pause(self) -> None:
        """Ask the end-of-turn model about the pause that just began (in a worker thread)."""
        model = self._backends.turn_model
        assert model is not None
        probability = await model.end_probability(self.turn.recent_audio())
        self._on_turn_event(self.turn.detector.on_end_probability(probability))

    def _idle_timeout(self) -> None:
        """`idle_timeout_ms` of silence after the last reply: commit an empty turn and answer it."""
        detection = self.config.turn_detection
        assert detection is not None and detection.idle_timeout_ms is not None
        end = int(self.turn.input_ms)
        self._emit(IdleTimeout(self.turn.item_id, max(0, end - detection.idle_timeout_ms), end))
        self._end_turn(idle_s=detection.idle_timeout_ms / 1000)

    def _finishing(self) -> bool:
        return self._turn_task is not None and not self._turn_task.done()

    def _end_turn(self, speech_end: float | None = None, idle_s: float | None = None) -> None:
        if self._finishing():
            return  # already finishing this turn
        turn = self.turn.commit()
        if turn.was_speaking:  # OpenAI pairs it with speech_started: none without turn detection
            self._emit(SpeechStopped(turn.item_id, turn.audio_end_ms))
        # The turn's place in the conversation is taken now; its words come after the flush.
        previous = self.history.reserve("user", turn.item_id)
        self._emit(UserTurnCommitted(turn.item_id, previous))
        latency = TurnLatency(speech_end=speech_end or TurnLatency.now())
        self._turn_task = self._spawn(self._finish_turn(turn, previous, latency, idle_s), "turn")

    async def _finish_turn(
        self, turn: FinishedTurn, previous: str | None, latency: TurnLatency, idle_s: float | None
    ) -> None:
        """Final transcript (from the prepared reply's flush, or a flush now), then the reply."""
        prepared: PreparedReply | None = await self.preemption.take()
        if prepared is None:
            try:
                await self.stt.flush()
            except BackendError as exc:
                self._emit(Problem(exc.event_code, f"{exc} - using the words so far"))
            latency.transcript = TurnLatency.now()
        transcript = self.turn.take_transcript()
        said = transcript or (IDLE_PROMPT.format(seconds=idle_s) if idle_s is not None else "")
        self.history.fill(turn.item_id, said)
        self._emit(UserTurnTranscribed(turn.item_id, previous, transcript, turn.audio_s))
        detection = self.config.turn_detection
        # An "mm-hm" over a reply that is still playing acknowledges it: it joins the
        # conversation, and the reply goes on, neither interrupted nor answered.
        acknowledged = bool(transcript) and is_backchannel(transcript) and self.replies.speaking()
        if not said or detection is None or not detection.create_response or acknowledged:
            if prepared is not None and prepared.run is not None:
                await prepared.run.discard()
            return  # noise or silence gets no answer; without turn detection the client asks
        if prepared is not None and prepared.run is not None and prepared.run.held_for == transcript:
            self._start_reply(prepared.run, interrupt=True)
        else:
            self._start_reply(self.replies.new_run(latency), interrupt=True)

    def _start_reply(self, run: ResponseRun, *, interrupt: bool) -> None:
        """Start `run` once the turn being finished and the audio items being transcribed are;
        a reply to the user's turn (`interrupt`) stops the replies still speaking."""
        after = [*self.items.transcribing]
        if self._finishing() and self._turn_task is not asyncio.current_task():
            assert self._turn_task is not None
            after.append(self._turn_task)
        self.replies.start(run, self.history.last_id(), after, interrupt=interrupt)
