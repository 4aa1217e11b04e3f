"""One reply: the LLM's words go to the TTS as they come, and its audio to the client.

A run reserves its assistant entry in the history when it begins and fills it when it
ends: with the whole text when it completed, with what the user heard when it was cut
short. Its LLM request and TTS stream run under the run's own TaskGroup, so a cancel
(barge-in, `response.cancel`) stops both at once and closes the TTS stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from typing import Literal

from orchestrator.clients.errors import BackendError
from orchestrator.pipeline.backends import Backends, TtsConnection
from orchestrator.pipeline.config import ResponseRequest, SessionConfig
from orchestrator.pipeline.events import (
    PlaybackCleared,
    Problem,
    ResponseAudio,
    ResponseEnded,
    ResponseStarted,
    ResponseText,
    SessionEvent,
    new_id,
)
from orchestrator.pipeline.history import History
from orchestrator.pipeline.latency import TurnLatency
from orchestrator.pipeline.speech_text import SpeechWords
from services.common.audio import SAMPLE_RATE
from services.common.protocol import AudioOut, Error, TextOut


class ResponseRun:
    """A reply from its start to the end of its audio on the client (estimated as real time)."""

    def __init__(
        self,
        request: ResponseRequest,
        *,
        config: SessionConfig,
        backends: Backends,
        history: History,
        emit: Callable[[SessionEvent], None],
        latency: TurnLatency,
        session_id: str,
        held_for: str | None = None,
    ) -> None:
        self.id = new_id("resp")
        self.item_id = new_id("item")
        self.request = request
        self._config = config
        self._backends = backends
        self._history = history
        self._emit = emit
        self._latency = latency
        self._session_id = session_id
        self.task: asyncio.Task[None] | None = None
        self.status: Literal["in_progress", "completed", "cancelled", "failed"] = "in_progress"
        self.cancel_reason = "turn_detected"  # OpenAI's reasons: turn_detected, client_cancelled
        self._failure: Problem | None = None
        self._words_sent: list[str] = []
        self._spoken: list[tuple[str, float, float]] = []  # the TTS's word times (s)
        self._audio_ms = 0.0
        self._playback_start: float | None = None
        self._ended = False  # the run is over (its ResponseEnded sent, or held)
        # A preemptive reply to the words `held_for` (a turn not yet committed): its events
        # are held until `release`, or dropped without a sound by `discard`.
        self.held_for = held_for
        self._held: list[SessionEvent] | None = [] if held_for is not None else None
        self._discarded = False

    def begin(self, previous_item_id: str | None) -> None:
        """Take the reply's place in the conversation now, before any await."""
        self._history.reserve("assistant", self.item_id)
        self._emit(ResponseStarted(self.id, self.item_id, previous_item_id, self.request.metadata))

    def release(self, previous_item_id: str | None) -> None:
        """The held reply's turn is confirmed: take its place and send what was prepared, now."""
        held, self._held = self._held or [], None
        self.begin(previous_item_id)
        now = TurnLatency.now()
        self._latency.released = now
        if self._playback_start is not None:
            self._playback_start = self._latency.first_audio_sent = now
        for event in held:
            self._emit(event)
        if self._ended:
            self._announce_end()

    async def discard(self) -> None:
        """The user went on speaking: drop the held reply with no sound and no history entry."""
        self._discarded = True
        if self.task is not None and not self.task.done():
            self.task.cancel()
            await asyncio.wait([self.task])

    def _out(self, event: SessionEvent) -> None:
        if self._held is not None:
            self._held.append(event)
        elif not self._discarded:
            self._emit(event)

    def generating(self) -> bool:
        """The LLM request or the TTS stream is still open."""
        return self.task is not None and not self.task.done()

    def speaking(self) -> bool:
        """Generating, or its audio still playing on the client."""
        return self.generating() or (self._playback_start is not None and self.played_ms() < self._audio_ms)

    def played_ms(self) -> float:
        """Where the client's playback should be, assuming it plays in real time."""
        if self._playback_start is None:
            return 0.0
        return min(self._audio_ms, (TurnLatency.now() - self._playback_start) * 1000)

    def heard_text(self, audio_end_ms: float) -> str:
        """The words whose audio had started by `audio_end_ms`."""
        return " ".join(text for text, start, _ in self._spoken if start * 1000 < audio_end_ms)

    async def run(self, after: Collection[asyncio.Task[None]] = ()) -> None:
        """Generate and stream the reply once the `after` tasks (a turn being transcribed,
        a reply being interrupted) are done, so the history it reads is final.

        A cancel ends the run normally (status cancelled); a backend failure ends it as
        failed with a `Problem`; any other exception is a bug and goes on to the session.
        """
        try:
            if after:
                await asyncio.wait(after)
            self._latency.transcript = self._latency.transcript or TurnLatency.now()
            words: asyncio.Queue[str | None] = asyncio.Queue()
            async with asyncio.TaskGroup() as group:
                group.create_task(self._think(words))
                group.create_task(self._speak(words))
            self.status = "completed"
        except asyncio.CancelledError:
            self.status = "cancelled"
        except BaseExceptionGroup as failure:
            self.status = "failed"
            backend, bugs = failure.split(BackendError)
            if backend is not None:
                exc = backend.exceptions[0]
                while isinstance(exc, BaseExceptionGroup):  # lost mid-reply: from _speak's own TaskGroup
                    exc = exc.exceptions[0]
                assert isinstance(exc, BackendError)
                what = f"{exc} - this reply was cut short; the next turn will try again"
                self._failure = Problem(exc.event_code, what)
                self._out(self._failure)
            if bugs is not None:
                self._failure = self._failure or Problem("server_error", f"the reply failed: {bugs!r}")
                raise bugs from None
        finally:
            self._end()

    async def interrupt(self, *, flush: bool) -> None:
        """Barge-in or cancel: stop the LLM and the TTS now; the history keeps what was heard."""
        if flush and self._playback_start is not None:
            self._out(PlaybackCleared(self.id, self.item_id))
        if self.generating():
            assert self.task is not None
            self.task.cancel()
            await asyncio.wait([self.task])
            if not self._ended:  # cancelled before it ever ran: it still owes its end
                self.status = "cancelled"
                self._end()
        elif self.speaking():
            self._history.fill(self.item_id, self.heard_text(self.played_ms()))
        # The client dropped its playback: nothing of this reply plays any more.
        self._audio_ms = self.played_ms()

    def _end(self) -> None:
        self._ended = True
        if self._held is None and not self._discarded:
            self._announce_end()

    def _announce_end(self) -> None:
        text = " ".join(self._words_sent)
        heard = text if self.status == "completed" else self.heard_text(self.played_ms())
        self._history.fill(self.item_id, heard)
        stages = None
        if self._latency.first_audio_sent is not None:
            stages = self._latency.publish(self._session_id)
        status: Literal["completed", "cancelled", "failed"] = (
            "completed" if self.status == "in_progress" else self.status
        )
        self._emit(
            ResponseEnded(
                self.id,
                self.item_id,
                status,
                text,
                metadata=self.request.metadata,
                reason=self.cancel_reason if status == "cancelled" else None,
                failure=self._failure,
                audio_sent=self._playback_start is not None,
                stages_ms=stages,
            )
        )

    async def _think(self, words: asyncio.Queue[str | None]) -> None:
        """LLM deltas -> whole spoken words on the queue."""
        splitter = SpeechWords()
        request = self.request
        limit = (
            None if request.unlimited_tokens else request.max_output_tokens or self._config.max_output_tokens
        )
        system_prompt = request.instructions or self._config.instructions
        messages = self._history.for_llm(system_prompt=system_prompt, pending_user=self.held_for)
        try:
            async for delta in self._backends.llm.stream(messages, limit):
                if self._latency.llm_first_token is None:
                    self._latency.llm_first_token = TurnLatency.now()
                for word in splitter.feed(delta):
                    words.put_nowait(word)
            for word in splitter.flush():
                words.put_nowait(word)
        finally:
            words.put_nowait(None)

    async def _speak(self, words: asyncio.Queue[str | None]) -> None:
        """Open the TTS (while the LLM starts), send it words, and stream its audio out."""
        voice = self.request.voice or self._config.voice
        async with await self._backends.open_tts(voice) as tts, asyncio.TaskGroup() as group:
            group.create_task(self._play(tts))
            while (word := await words.get()) is not None:
                await tts.send_word(word)
                self._words_sent.append(word)
                self._out(ResponseText(self.id, self.item_id, word))
            await tts.send_eos()

    async def _play(self, tts: TtsConnection) -> None:
        async for message in tts.events():
            if isinstance(message, AudioOut):
                if self._latency.tts_first_audio is None:
                    self._latency.tts_first_audio = TurnLatency.now()
                self._out(ResponseAudio(self.id, self.item_id, message.pcm))
                if self._playback_start is None:
                    self._playback_start = self._latency.first_audio_sent = TurnLatency.now()
                self._audio_ms += message.pcm.size * 1000 / SAMPLE_RATE
            elif isinstance(message, TextOut):
                self._spoken.append((message.text, message.start_s, message.stop_s))
            elif isinstance(message, Error):
                raise BackendError("TTS", message.message)
