"""One conversation: audio in -> STT -> turn detection -> LLM -> TTS -> audio out.

The session owns the STT stream for its whole life (reconnecting with backoff when the
service goes away), detects turns from the STT's pause probabilities, and runs one
response at a time: the LLM request and the TTS stream start together, cleaned words
flow from one to the other, and audio goes to the client as it comes. A barge-in
cancels the response at once and keeps in the history only what the user heard.
Every backend failure becomes an `error` event; the session itself never dies of one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orchestrator.clients.errors import BackendError, BackendTimeout
from orchestrator.clients.llm import LlmClient
from orchestrator.clients.stt import SttStream
from orchestrator.clients.tts import TtsStream
from orchestrator.pipeline.history import DEFAULT_SYSTEM_PROMPT, History
from orchestrator.pipeline.latency import TurnLatency
from orchestrator.pipeline.speech_text import SpeechWords
from orchestrator.pipeline.turns import TurnDetector, TurnEvent
from orchestrator.realtime.events import Session, TurnDetection, error_event, new_id, server_event
from services.common.audio import FRAME_SECONDS, SAMPLE_RATE
from services.common.protocol import AudioOut, EndWord, Error, MarkerOut, Step, TextOut, Word

logger = logging.getLogger(__name__)

# A Marker flush pushes ~0.5 s of silence through after whatever audio is still queued;
# beyond that backlog, 3 s more means the STT is stuck.
FLUSH_TIMEOUT_S = 3.0
CONNECT_BUFFER_S = 30.0  # audio kept while the STT stream is being (re)connected
RECONNECT_BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)
EXTENSION = "unmute_slurm"
KEPT_RESPONSES = 32

Emit = Callable[[dict[str, Any]], None]


@dataclass
class Backends:
    """Where the three backends are, shared by all sessions."""

    stt_url: str
    tts_url: str
    service_key: str
    llm: LlmClient


@dataclass
class _Response:
    """One assistant turn in flight (or just finished and possibly still playing)."""

    id: str = field(default_factory=lambda: new_id("resp"))
    item_id: str = field(default_factory=lambda: new_id("item"))
    task: asyncio.Task[None] | None = None
    words_sent: list[str] = field(default_factory=list)
    spoken: list[tuple[str, float, float]] = field(default_factory=list)  # TTS word times (s)
    audio_ms: float = 0.0
    playback_start: float | None = None
    status: str = "in_progress"
    # Set by `response.create` (validated there); None: the session's own settings.
    instructions: str | None = None
    max_output_tokens: int | str | None = None
    voice: str | None = None
    metadata: dict[str, str] | None = None
    cancel_reason: str = "turn_detected"  # OpenAI's reasons: turn_detected, client_cancelled
    failure: dict[str, str] | None = None  # status_details.error of a failed response

    @classmethod
    def requested(cls, options: dict[str, Any]) -> _Response:
        """A response with what `response.create` asked for (a validated `response` object)."""
        output = (options.get("audio") or {}).get("output") or {}
        return cls(
            instructions=options.get("instructions"),
            max_output_tokens=options.get("max_output_tokens"),
            voice=output.get("voice"),
            metadata=options.get("metadata"),
        )

    def played_ms(self) -> float:
        """Where the client's playback should be, assuming it plays in real time."""
        if self.playback_start is None:
            return 0.0
        return min(self.audio_ms, (TurnLatency.now() - self.playback_start) * 1000)

    def still_playing(self) -> bool:
        return self.playback_start is not None and self.played_ms() < self.audio_ms

    def heard_text(self, audio_end_ms: float) -> str:
        """The words whose audio had started by `audio_end_ms`."""
        return " ".join(text for text, start, _ in self.spoken if start * 1000 < audio_end_ms)


class VoiceSession:
    """The pipeline of one Realtime connection."""

    def __init__(
        self,
        backends: Backends,
        emit: Emit,
        *,
        default_voice: str | None,
        max_output_tokens: int,
        history_turns: int,
        history_tokens: int,
    ) -> None:
        self.backends = backends
        self.emit = emit
        self.session = Session(max_output_tokens=max_output_tokens)
        self.session.audio.output.voice = default_voice
        self.history = History(max_turns=history_turns, max_tokens=history_tokens)
        self.turns = TurnDetector()
        self.stt: SttStream | None = None
        self.input_ms = 0.0
        self._user_item: str | None = None
        self._user_words: list[str] = []
        self._user_speaking = False  # a speech_started was sent for the user's current item
        self._committed_ms = 0.0  # input audio up to the last commit
        self._last_item: str | None = None  # the conversation's latest item (user or assistant)
        self._speech_end: float | None = None
        self._markers: dict[int, asyncio.Future[None]] = {}
        self._marker_seq = 0
        self._turn_task: asyncio.Task[None] | None = None
        self.response: _Response | None = None
        self._response_requested = False  # a response.create waits for its turn's transcript
        self._closing = False  # aclose has begun
        self._responses: dict[str, _Response] = {}
        self._stt_down: str | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._held_audio: list[np.ndarray] = []  # arrived before the STT stream was up
        self._stt_up = asyncio.Event()  # set while the STT stream is connected
        self._stt_sent_s = 0.0  # audio sent on the current STT stream ...
        self._stt_done_s = 0.0  # ... and how much of it the STT has stepped through (Steps)

    @property
    def id(self) -> str:
        return self.session.id

    # ---- lifecycle -----------------------------------------------------------------------

    async def run(self) -> None:
        """Keep the STT stream up until the session is cancelled.

        The stream is closed on every way out of a connection, cancellation included:
        one left open would hold an STT slot until the service's idle timeout.
        """
        attempt = 0
        while True:
            try:
                async with await SttStream.open(self.backends.stt_url, self.backends.service_key) as stt:
                    attempt = 0
                    await self._serve_stt(stt)
            except BackendError as exc:
                self._fail_markers()
                if self._stt_down is None:
                    self._stt_down = str(exc)
                    self._error(exc, "speech recognition is paused; it resumes when the service is back")
                await asyncio.sleep(RECONNECT_BACKOFF_S[min(attempt, len(RECONNECT_BACKOFF_S) - 1)])
                attempt += 1

    async def _serve_stt(self, stt: SttStream) -> None:
        """Send the audio held while connecting, then handle the stream's messages until it ends."""
        held, self._held_audio = self._held_audio, []
        self._stt_sent_s = self._stt_done_s = 0.0
        for pcm in held:
            await stt.send_audio(pcm)
            self._stt_sent_s += pcm.size / SAMPLE_RATE
        self.stt = stt
        self._stt_up.set()
        try:
            if self._stt_down is not None:
                logger.info("STT back", extra={"session": self.id})
            self._stt_down = None
            async for message in stt.events():
                self._on_stt(message)
        finally:
            self.stt = None
            self._stt_up.clear()

    async def aclose(self) -> None:
        """Stop the turns and responses this session started (`run`'s owner cancels `run`).

        Every response still running is cancelled, not only the latest: a barge-in hands
        the previous one to a background `_interrupt` that may not have run yet. Tasks are
        collected again until none is left, since one cancelled here may start another
        first (a turn ending into a response); each running response holds a TTS stream.
        """
        self._closing = True
        while live := self._live_tasks():
            for task in live:
                task.cancel()
            await asyncio.gather(*live, return_exceptions=True)

    def _live_tasks(self) -> list[asyncio.Task[None]]:
        responses = (r.task for r in self._responses.values())
        tasks = (self._turn_task, *responses, *self._background)
        return [t for t in tasks if t is not None and not t.done()]

    def _spawn(self, coro: Any, name: str) -> None:
        """Run a short task owned by the session (cancelled with it, never lost)."""
        task = asyncio.get_running_loop().create_task(coro, name=f"{name}-{self.id}")
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[None]) -> None:
        """Forget a finished background task; a failure reaches the log and the client."""
        self._background.discard(task)
        if task.cancelled() or (exc := task.exception()) is None:
            return
        logger.error("session task %s failed", task.get_name(), exc_info=exc)
        self.emit(error_event("internal_error", f"{task.get_name()} failed: {exc}", kind="server_error"))

    def _error(self, exc: BackendError, consequence: str) -> None:
        self.emit(error_event(exc.event_code, f"{exc} - {consequence}", kind="server_error"))

    # ---- client requests ------------------------------------------------------------------

    def update(self, patch: dict[str, Any]) -> None:
        """Apply a `session.update` (already validated by the event model) and confirm it."""
        if patch.get("instructions") is not None:
            self.session.instructions = patch["instructions"]
            self.history.system_prompt = patch["instructions"] or DEFAULT_SYSTEM_PROMPT
        if patch.get("max_output_tokens") is not None:
            self.session.max_output_tokens = patch["max_output_tokens"]
        audio = patch.get("audio") or {}
        inp, out = audio.get("input") or {}, audio.get("output") or {}
        if "turn_detection" in inp:
            td = inp["turn_detection"]
            self.session.audio.input.turn_detection = None if td is None else TurnDetection.model_validate(td)
            if td is not None:
                detection = self.session.audio.input.turn_detection
                assert detection is not None
                self.turns.threshold = detection.threshold
                self.turns.silence_duration_ms = detection.silence_duration_ms
        if out.get("voice") is not None:
            self.session.audio.output.voice = str(out["voice"])
        self.emit(server_event("session.updated", session=self.session.model_dump()))

    async def append_audio(self, pcm: np.ndarray) -> None:
        """Forward client audio to the STT.

        Until the first connection is up, audio is held (a client may start talking the
        moment the session opens); while the STT is known to be down it is dropped, as
        the error event already told the client.
        """
        self.input_ms += pcm.size * 1000 / SAMPLE_RATE
        if self.stt is None:
            held = sum(p.size for p in self._held_audio) / SAMPLE_RATE
            if self._stt_down is None and held < CONNECT_BUFFER_S:
                self._held_audio.append(pcm)
            return
        # On failure the STT loop sees the same loss, reports it once, and reconnects.
        with contextlib.suppress(BackendError):
            await self.stt.send_audio(pcm)
            self._stt_sent_s += pcm.size / SAMPLE_RATE

    def commit(self) -> None:
        """Manual end of turn (`input_audio_buffer.commit`)."""
        self._end_turn()

    def clear(self) -> None:
        """Forget the user's unfinished turn."""
        self._user_words.clear()
        self._user_item = None
        self._user_speaking = False
        self.turns.reset()
        self.emit(server_event("input_audio_buffer.cleared"))

    def create_response(self, options: dict[str, Any] | None = None, event_id: str | None = None) -> None:
        """`response.create`: answer the conversation once a committed turn's transcript is final.

        `options` is the event's validated `response` object: its instructions, token cap,
        voice and metadata apply to this response only. As in OpenAI's API, one response
        at a time: while one is requested or running, another is refused with an error
        (each would otherwise open its own LLM request and TTS stream).
        """
        if self._response_requested or self._responding():
            what = "a response is already in progress; cancel it first (response.cancel)"
            self.emit(error_event("conversation_already_has_active_response", what, event_id))
            return
        self._response_requested = True
        latency = TurnLatency(speech_end=TurnLatency.now())
        pending = self._turn_task
        response = _Response.requested(options or {})

        async def when_transcribed() -> None:
            try:
                if pending is not None:
                    await asyncio.shield(pending)
                latency.transcript = latency.transcript or TurnLatency.now()
                self._start_response(latency, response)
            finally:
                self._response_requested = False

        self._spawn(when_transcribed(), "response-create")

    async def cancel_response(self, response_id: str | None = None, event_id: str | None = None) -> None:
        """`response.cancel`: stop the assistant (no flush needed: the client asked)."""
        response = self.response
        if response is None or not self._responding() or response_id not in (None, response.id):
            what = f"response {response_id!r} is" if response_id else "no response is"
            self.emit(error_event("response_cancel_not_active", f"{what} in progress", event_id))
            return
        response.cancel_reason = "client_cancelled"
        await self._interrupt(response, flush=False)

    def truncate(self, item_id: str, audio_end_ms: int, event_id: str | None) -> None:
        """Keep in the history only the words of `item_id` whose audio had started by `audio_end_ms`."""
        response = self._responses.get(item_id)
        if response is None:
            self.emit(error_event("item_not_found", f"no assistant item {item_id!r}", event_id, "item_id"))
            return
        heard = response.heard_text(audio_end_ms)
        self.history.truncate(item_id, heard)
        # `transcript` (what was heard) is this project's addition to OpenAI's event.
        truncated = server_event(
            "conversation.item.truncated",
            item_id=item_id,
            content_index=0,
            audio_end_ms=audio_end_ms,
            transcript=heard,
        )
        self.emit(truncated)

    # ---- STT events ------------------------------------------------------------------------

    def _on_stt(self, message: object) -> None:
        vad = self.session.audio.input.turn_detection is not None
        if isinstance(message, Step):
            self._stt_done_s += FRAME_SECONDS
            event = self.turns.on_step(message.prs) if vad else None
            if event is TurnEvent.SPEECH_STARTED:
                self._speech_started()
            elif event is TurnEvent.END_OF_TURN:
                self._speech_end = TurnLatency.now() - self.turns.quiet_ms / 1000
                self._end_turn()
        elif isinstance(message, Word):
            if vad and self.turns.on_word() is TurnEvent.SPEECH_STARTED:
                self._speech_started()
            item = self._user_item_id()
            self._user_words.append(message.text)
            self.emit(
                server_event(
                    "conversation.item.input_audio_transcription.delta",
                    item_id=item,
                    content_index=0,
                    delta=message.text + " ",
                )
            )
        elif isinstance(message, MarkerOut):
            future = self._markers.pop(message.id, None)
            if future is not None and not future.done():
                future.set_result(None)
        elif isinstance(message, Error):
            self.emit(error_event("stt_error", f"STT: {message.message}", kind="server_error"))
        elif not isinstance(message, EndWord):
            logger.debug("ignored STT message %s", type(message).__name__)

    def _user_item_id(self) -> str:
        if self._user_item is None:
            self._user_item = new_id("item")
        return self._user_item

    def _speech_started(self) -> None:
        self._user_speaking = True
        self.emit(
            server_event(
                "input_audio_buffer.speech_started",
                item_id=self._user_item_id(),
                audio_start_ms=int(self.input_ms),
            )
        )
        detection = self.session.audio.input.turn_detection
        if detection is not None and detection.interrupt_response and self._assistant_speaking():
            assert self.response is not None
            self._spawn(self._interrupt(self.response, flush=True), "interrupt")

    def _responding(self) -> bool:
        """A response is being generated (its LLM request or TTS stream is open)."""
        r = self.response
        return r is not None and r.task is not None and not r.task.done()

    def _assistant_speaking(self) -> bool:
        r = self.response
        return self._responding() or (r is not None and r.still_playing())

    # ---- the user's turn ends ----------------------------------------------------------------

    def _end_turn(self) -> None:
        if self._turn_task is not None and not self._turn_task.done():
            return  # already finishing this turn
        speech_end = self._speech_end or TurnLatency.now()
        self._speech_end = None
        self._turn_task = asyncio.get_running_loop().create_task(
            self._finish_user_turn(TurnLatency(speech_end=speech_end)), name=f"turn-{self.id}"
        )

    async def _finish_user_turn(self, latency: TurnLatency) -> None:
        item = self._user_item_id()
        if self._user_speaking:  # OpenAI pairs it with speech_started: none without turn detection
            self._user_speaking = False
            self.emit(
                server_event(
                    "input_audio_buffer.speech_stopped", item_id=item, audio_end_ms=int(self.input_ms)
                )
            )
        audio_s = (self.input_ms - self._committed_ms) / 1000
        self._committed_ms = self.input_ms
        await self._flush_stt()
        transcript = " ".join(self._user_words).strip()
        self._user_words.clear()
        self._user_item = None
        latency.transcript = TurnLatency.now()
        self.emit(
            server_event("input_audio_buffer.committed", item_id=item, previous_item_id=self._last_item)
        )
        user_item = {
            "id": item,
            "object": "realtime.item",
            "type": "message",
            "role": "user",
            "status": "completed",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        self._add_item(user_item)
        self.emit(server_event("conversation.item.done", item=user_item))
        self.emit(
            server_event(
                "conversation.item.input_audio_transcription.completed",
                item_id=item,
                content_index=0,
                transcript=transcript,
                usage={"type": "duration", "seconds": round(max(0.0, audio_s), 3)},
            )
        )
        if not transcript:
            return  # noise or silence: nothing to answer
        self.history.add("user", transcript)
        detection = self.session.audio.input.turn_detection
        if detection is not None and detection.create_response:
            self._start_response(latency, _Response())
        # Without turn detection the client asks with response.create (OpenAI's semantics).

    def _add_item(self, item: dict[str, Any]) -> None:
        """`conversation.item.added`, chained to the conversation's previous item."""
        self.emit(server_event("conversation.item.added", previous_item_id=self._last_item, item=item))
        self._last_item = item["id"]

    async def _flush_stt(self) -> None:
        """Send a Marker and wait until the STT has transcribed everything before it."""
        if self.stt is None and self._stt_down is None:
            # A turn committed while the stream is still connecting: its audio is held and
            # goes out on connect, so wait for that rather than skip the flush.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stt_up.wait(), FLUSH_TIMEOUT_S)
        if self.stt is None:
            return
        self._marker_seq += 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._markers[self._marker_seq] = future
        try:
            await self.stt.send_marker(self._marker_seq)
            # A client may commit seconds of audio sent in one burst: the STT has to get
            # through that backlog first, so it counts on top of the stuck-STT margin.
            await asyncio.wait_for(future, FLUSH_TIMEOUT_S + max(0.0, self._stt_sent_s - self._stt_done_s))
        except TimeoutError:
            self._error(
                BackendTimeout("STT", f"flush took over {FLUSH_TIMEOUT_S:.0f} s"), "using the words so far"
            )
        except BackendError as exc:
            self._error(exc, "using the words so far")

    def _fail_markers(self) -> None:
        for future in self._markers.values():
            if not future.done():
                future.set_exception(BackendError("STT", "connection lost during a flush"))
        self._markers.clear()

    # ---- the assistant's turn --------------------------------------------------------------

    def _start_response(self, latency: TurnLatency, response: _Response) -> None:
        if self._closing:
            return  # the session is ending: no new LLM request or TTS stream
        if self._assistant_speaking():
            assert self.response is not None
            self._spawn(self._interrupt(self.response, flush=True), "interrupt")
        self.response = response
        self._responses[response.item_id] = response
        while len(self._responses) > KEPT_RESPONSES:  # truncation only concerns recent items
            self._responses.pop(next(iter(self._responses)))
        response.task = asyncio.get_running_loop().create_task(
            self._respond(response, latency), name=response.id
        )

    async def _interrupt(self, response: _Response, *, flush: bool) -> None:
        """Barge-in or cancel: stop LLM and TTS now; keep in history what was heard."""
        if flush and response.playback_start is not None:
            clear = server_event(
                f"{EXTENSION}.output_audio.clear", response_id=response.id, item_id=response.item_id
            )
            self.emit(clear)
        if response.task is not None and not response.task.done():
            response.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await response.task
        elif response.still_playing():
            self.history.truncate(response.item_id, response.heard_text(response.played_ms()))
        # The client flushed its playback: nothing of this response is playing any more.
        response.audio_ms = response.played_ms()

    async def _respond(self, response: _Response, latency: TurnLatency) -> None:
        """Run one response, framed by OpenAI's item and content-part events in OpenAI's order."""
        ids = dict(response_id=response.id, item_id=response.item_id, output_index=0, content_index=0)
        self.emit(server_event("response.created", response=self._response_object(response)))
        item = self._assistant_item(response, None)
        self.emit(
            server_event("response.output_item.added", response_id=response.id, output_index=0, item=item)
        )
        self._add_item(item)
        self.emit(
            server_event("response.content_part.added", part={"type": "audio", "transcript": ""}, **ids)
        )
        words: asyncio.Queue[str | None] = asyncio.Queue()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._think(response, words, latency))
                group.create_task(self._speak(response, words, latency, ids))
            response.status = "completed"
        except asyncio.CancelledError:
            response.status = "cancelled"
        except BaseExceptionGroup as group_error:
            response.status = "failed"
            for exc in group_error.exceptions:
                if isinstance(exc, BackendError):
                    self._error(exc, "this reply was cut short; the next turn will try again")
                    code = exc.event_code
                else:
                    logger.exception("response failed", exc_info=exc)
                    self.emit(error_event("internal_error", f"the reply failed: {exc}", kind="server_error"))
                    code = "internal_error"
                failure = {"type": "server_error", "code": code, "message": str(exc)}
                response.failure = response.failure or failure
        text = " ".join(response.words_sent)
        heard = text if response.status == "completed" else response.heard_text(response.played_ms())
        self.history.add("assistant", heard, item_id=response.item_id)
        if latency.first_audio_sent is not None:
            stages = latency.publish(self.id)
            self.emit(
                server_event(
                    f"{EXTENSION}.latency",
                    response_id=response.id,
                    item_id=response.item_id,
                    stages_ms=stages,
                )
            )
        self.emit(server_event("response.output_audio.done", **ids))
        self.emit(server_event("response.output_audio_transcript.done", transcript=text, **ids))
        self.emit(
            server_event("response.content_part.done", part={"type": "audio", "transcript": text}, **ids)
        )
        item = self._assistant_item(response, text)
        self.emit(
            server_event("response.output_item.done", response_id=response.id, output_index=0, item=item)
        )
        self.emit(server_event("conversation.item.done", item=item))
        self.emit(server_event("response.done", response=self._response_object(response, item)))

    @staticmethod
    def _assistant_item(response: _Response, text: str | None) -> dict[str, Any]:
        """The response's message item: in progress and empty until `text` is final.

        Items are only ever completed, incomplete or in progress (the response itself
        says whether it was cancelled or failed).
        """
        content: list[dict[str, Any]] = []
        status = "in_progress"
        if text is not None:
            content = [{"type": "output_audio", "transcript": text}]
            status = "completed" if response.status == "completed" else "incomplete"
        return {
            "id": response.item_id,
            "object": "realtime.item",
            "type": "message",
            "role": "assistant",
            "status": status,
            "content": content,
        }

    @staticmethod
    def _response_object(response: _Response, item: dict[str, Any] | None = None) -> dict[str, Any]:
        details: dict[str, Any] | None = None
        if response.status == "cancelled":
            details = {"type": "cancelled", "reason": response.cancel_reason}
        elif response.status == "failed":
            details = {"type": "failed", "error": response.failure}
        return {
            "id": response.id,
            "object": "realtime.response",
            "status": response.status,
            "status_details": details,
            "output": [item] if item is not None else [],
            "output_modalities": ["audio"],
            "metadata": response.metadata,
        }

    async def _think(
        self, response: _Response, words: asyncio.Queue[str | None], latency: TurnLatency
    ) -> None:
        """LLM deltas -> whole spoken words on the queue."""
        splitter = SpeechWords()
        limit = response.max_output_tokens or self.session.max_output_tokens
        messages = self.history.for_llm(system_prompt=response.instructions)
        try:
            async for delta in self.backends.llm.stream(messages, None if limit == "inf" else int(limit)):
                if latency.llm_first_token is None:
                    latency.llm_first_token = TurnLatency.now()
                for word in splitter.feed(delta):
                    words.put_nowait(word)
            for word in splitter.flush():
                words.put_nowait(word)
        finally:
            words.put_nowait(None)

    async def _speak(
        self,
        response: _Response,
        words: asyncio.Queue[str | None],
        latency: TurnLatency,
        ids: dict[str, Any],
    ) -> None:
        """Open the TTS (while the LLM starts), send it words, and stream its audio out."""
        voice = response.voice or self.session.audio.output.voice
        async with (
            await TtsStream.open(self.backends.tts_url, self.backends.service_key, voice) as tts,
            asyncio.TaskGroup() as group,
        ):
            group.create_task(self._play(response, tts, latency, ids))
            while (word := await words.get()) is not None:
                await tts.send_word(word)
                response.words_sent.append(word)
                self.emit(server_event("response.output_audio_transcript.delta", delta=word + " ", **ids))
            await tts.send_eos()

    async def _play(
        self, response: _Response, tts: TtsStream, latency: TurnLatency, ids: dict[str, Any]
    ) -> None:
        async for message in tts.events():
            if isinstance(message, AudioOut):
                if latency.tts_first_audio is None:
                    latency.tts_first_audio = TurnLatency.now()
                pcm16 = (np.clip(message.pcm, -1.0, 1.0) * 32767).astype("<i2").tobytes()
                self.emit(
                    server_event("response.output_audio.delta", delta=base64.b64encode(pcm16).decode(), **ids)
                )
                if response.playback_start is None:
                    response.playback_start = latency.first_audio_sent = TurnLatency.now()
                response.audio_ms += message.pcm.size * 1000 / SAMPLE_RATE
            elif isinstance(message, TextOut):
                response.spoken.append((message.text, message.start_s, message.stop_s))
            elif isinstance(message, Error):
                raise BackendError("TTS", message.message)
