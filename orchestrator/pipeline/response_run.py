"""One reply: the LLM's words go to the TTS as they come, and its audio to the client; the
functions it calls are streamed to the client as they are generated.

A reply's items (`ReplyOutput`) take their place in the conversation as they start, and
its message gets its text when the reply ends: the whole text when it completed, what the
user heard when it was cut short. A text-only reply opens no TTS stream and sends the LLM's
text as it comes. Its LLM request and TTS stream run under the run's own TaskGroup, so a
cancel (barge-in, `response.cancel`) stops both at once and closes the TTS stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from functools import partial
from typing import Literal

from kit.protocol import AudioOut, Error, TextOut
from orchestrator.clients.errors import BackendError
from orchestrator.clients.llm_request import LlmRequest, ToolCallDelta
from orchestrator.pipeline.backends import Backends, TtsConnection
from orchestrator.pipeline.chat_messages import chat_tools
from orchestrator.pipeline.config import ResponseRequest, SessionConfig
from orchestrator.pipeline.events import (
    PlaybackCleared,
    PlaybackFinished,
    Problem,
    ResponseAudio,
    ResponseEnded,
    ResponseStarted,
    ResponseText,
    SessionEvent,
    new_id,
)
from orchestrator.pipeline.history import History
from orchestrator.pipeline.items import Message, snapshot
from orchestrator.pipeline.latency import TurnLatency
from orchestrator.pipeline.playback import Playback
from orchestrator.pipeline.reply_output import Action, ReplyOutput
from orchestrator.pipeline.speech_text import SpeechWords

Words = asyncio.Queue[str | None]  # the words for the TTS, None at the end


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
        self.text_only = config.text_only if request.text_only is None else request.text_only
        self.in_conversation = not request.out_of_band
        self._config, self._backends, self._history = config, backends, history
        self._emit, self._latency, self._session_id = emit, latency, session_id
        message = Message(self.item_id, "assistant", spoken=not self.text_only, status="in_progress")
        self.output = ReplyOutput(
            self.id, message, history if self.in_conversation else None, self._act, emit
        )
        self.playback = Playback()
        self.task: asyncio.Task[None] | None = None
        self.status: Literal["in_progress", "completed", "cancelled", "failed"] = "in_progress"
        self.cancel_reason = "turn_detected"  # OpenAI's reasons: turn_detected, client_cancelled
        self._failure: Problem | None = None
        self._text: list[str] = []  # the words sent to the TTS, or (text only) the LLM's text
        self._ended = False  # the run is over (its ResponseEnded sent, or held)
        # A preemptive reply to the words `held_for` (a turn not yet committed): what it does
        # is held until `release`, or dropped without a sound by `discard`.
        self.held_for = held_for
        self._held: list[Action] | None = [] if held_for is not None else None
        self._discarded = False

    def begin(self, previous_item_id: str | None) -> None:
        """The reply starts, after `previous_item_id` in the conversation."""
        self.output.begin(previous_item_id)
        metadata, text_only = self.request.metadata, self.text_only
        self._emit(
            ResponseStarted(
                self.id, self.item_id, previous_item_id, metadata, text_only, self.in_conversation
            )
        )

    def release(self, previous_item_id: str | None) -> None:
        """The held reply's turn is confirmed: take its place and send what was prepared, now."""
        held, self._held = self._held or [], None
        self.begin(previous_item_id)
        now = TurnLatency.now()
        self._latency.released = now
        if self.playback.start is not None:
            self.playback.start = self._latency.first_audio_sent = now
        for action in held:
            action()
        if self._ended:
            self._announce_end()

    async def discard(self) -> None:
        """The user went on speaking: drop the held reply with no sound and no conversation item."""
        self._discarded = True
        if self.task is not None and not self.task.done():
            self.task.cancel()
            await asyncio.wait([self.task])

    def _act(self, action: Action) -> None:
        if self._held is not None:
            self._held.append(action)
        elif not self._discarded:
            action()

    def _out(self, event: SessionEvent) -> None:
        self._act(partial(self._emit, event))

    def generating(self) -> bool:
        """The LLM request or the TTS stream is still open."""
        return self.task is not None and not self.task.done()

    def speaking(self) -> bool:
        """Generating, or its audio still playing on the client."""
        return self.generating() or self.playback.playing()

    async def run(self, after: Collection[asyncio.Task[None]] = ()) -> None:
        """Generate and stream the reply once the `after` tasks (a turn being transcribed,
        a reply being interrupted) are done, so the conversation it reads is final.

        A cancel ends the run normally (status cancelled); a backend failure ends it as
        failed with a `Problem`; any other exception is a bug and goes on to the session.
        """
        try:
            if after:
                await asyncio.wait(after)
            self._latency.transcript = self._latency.transcript or TurnLatency.now()
            words: Words | None = None if self.text_only else asyncio.Queue()
            async with asyncio.TaskGroup() as group:
                group.create_task(self._think(words))
                if words is not None:
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

    async def interrupt(self) -> None:
        """Barge-in or cancel: stop the LLM and the TTS now and drop the client's playback;
        the conversation keeps what was heard."""
        if self.playback.cut():
            self._out(PlaybackCleared(self.id, self.item_id))
        if self.generating():
            assert self.task is not None
            self.task.cancel()
            await asyncio.wait([self.task])
            if not self._ended:  # cancelled before it ever ran: it still owes its end
                self.status = "cancelled"
                self._end()
        elif self.output.has_message and self.in_conversation:
            self._history.fill(self.item_id, self.playback.heard_text(self.playback.played_ms()), None)

    async def watch_playback(self) -> None:
        """Once the reply is over and its audio has played out, say so (not after a cut)."""
        if self.task is not None:
            await asyncio.wait([self.task])
        if self.playback.start is not None and not self._discarded and await self.playback.until_played():
            self._out(PlaybackFinished(self.id))

    def _end(self) -> None:
        self.output.close_calls(complete=False)  # a call still open was cut short
        self._ended = True
        if self._held is None and not self._discarded:
            self._announce_end()

    def _announce_end(self) -> None:
        status: Literal["completed", "cancelled", "failed"] = (
            "completed" if self.status == "in_progress" else self.status
        )
        separator = "" if self.text_only else " "
        text = separator.join(self._text)
        cut = status != "completed" and not self.text_only
        heard = self.playback.heard_text(self.playback.played_ms()) if cut else text
        item_status = "completed" if status == "completed" else "incomplete"
        message = self.output.message
        message.text, message.status = heard, item_status
        if self.output.has_message and self.in_conversation:
            self._history.fill(self.item_id, heard, item_status)  # the budget counts it now
        stages = None
        if self._latency.first_audio_sent is not None:
            stages = self._latency.publish(self._session_id)
        self._emit(
            ResponseEnded(
                self.id,
                self.item_id,
                status,
                text,
                metadata=self.request.metadata,
                reason=self.cancel_reason if status == "cancelled" else None,
                failure=self._failure,
                audio_sent=self.playback.start is not None,
                stages_ms=stages,
                outputs=tuple(snapshot(item) for item in self.output.outputs),
            )
        )

    def _llm_request(self) -> LlmRequest:
        request, config = self.request, self._config
        limit = None if request.unlimited_tokens else request.max_output_tokens or config.max_output_tokens
        context = None if request.context is None else list(request.context)
        messages = self._history.for_llm(
            system_prompt=request.instructions or config.instructions,
            pending_user=self.held_for,
            context=context,
        )
        tools = config.tools if request.tools is None else request.tools
        tool_specs, choice = chat_tools(tools, request.tool_choice or config.tool_choice)
        return LlmRequest(messages, limit, tool_specs, choice)

    async def _think(self, words: Words | None) -> None:
        """LLM deltas -> whole spoken words on the queue (or, text only, the text as it comes);
        tool-call pieces -> the reply's calls."""
        splitter = SpeechWords()
        try:
            async for delta in self._backends.llm.stream(self._llm_request()):
                if self._latency.llm_first_token is None:
                    self._latency.llm_first_token = TurnLatency.now()
                if isinstance(delta, ToolCallDelta):
                    self.output.tool_delta(delta)
                elif words is None:
                    self._add_text(delta)
                else:
                    self._queue_words(splitter.feed(delta), words)
            if words is not None:
                self._queue_words(splitter.flush(), words)
            self.output.close_calls(complete=True)
        finally:
            if words is not None:
                words.put_nowait(None)

    def _queue_words(self, new: list[str], words: Words) -> None:
        for word in new:
            self.output.words_begin()
            words.put_nowait(word)

    def _add_text(self, delta: str) -> None:
        if not self._text and not delta.strip():
            return  # nothing to show yet
        self.output.words_begin()
        self._text.append(delta)
        self._out(ResponseText(self.id, self.item_id, delta))

    async def _speak(self, words: Words) -> None:
        """Open the TTS (while the LLM starts), send it words, and stream its audio out."""
        voice = self.request.voice or self._config.voice
        async with await self._backends.open_tts(voice) as tts, asyncio.TaskGroup() as group:
            play = group.create_task(self._play(tts))
            while (word := await words.get()) is not None:
                await tts.send_word(word)
                self._text.append(word)
                self._out(ResponseText(self.id, self.item_id, word))
            if not self._text:
                # Nothing to say (a reply of function calls only): the reply ends now, not
                # after the TTS has closed a stream that never spoke.
                play.cancel()
                return
            await tts.send_eos()

    async def _play(self, tts: TtsConnection) -> None:
        async for message in tts.events():
            if isinstance(message, AudioOut):
                if self._latency.tts_first_audio is None:
                    self._latency.tts_first_audio = TurnLatency.now()
                self._out(ResponseAudio(self.id, self.item_id, message.pcm))
                if self.playback.sent(message.pcm.size):
                    self._latency.first_audio_sent = TurnLatency.now()
            elif isinstance(message, TextOut):
                self.playback.words.append((message.text, message.start_s, message.stop_s))
            elif isinstance(message, Error):
                raise BackendError("TTS", message.message)
