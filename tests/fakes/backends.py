"""In-process stand-ins for the STT, TTS and LLM, behind the pipeline's `Backends` seam.

They speak the same typed messages as the real clients (`kit.protocol`), and
the test drives them: it pushes the STT's words and steps, gates the LLM's tokens, and
drops the STT connection when it wants an outage.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import numpy as np

from kit.audio import FRAME_SECONDS, FRAME_SIZE, SAMPLE_RATE
from kit.protocol import AudioOut, MarkerOut, Step, TextOut, WireMessage, Word
from orchestrator.clients.errors import BackendUnavailable
from orchestrator.clients.llm_request import ChatMessage, LlmDelta, LlmRequest, ToolCallDelta
from orchestrator.pipeline.session import VoiceSession

VOICED = [0.0, 0.0, 0.0, 0.0]  # prs of a frame with speech: no pause ahead
PAUSE = [1.0, 1.0, 1.0, 1.0]  # prs of a frame in a pause
FRAMES_PER_WORD = 3  # each fake TTS word is 240 ms of audio


class FakeStt:
    """One STT stream: markers are echoed at once, after everything pushed before them."""

    def __init__(self, words_at_flush: list[str] | None = None) -> None:
        self.audio_samples = 0
        self.closed = False
        self.words_at_flush = words_at_flush or []  # what it "hears" in the audio before a marker
        self.clock_s = 0.0  # the audio its steps have covered: the clock of its words' times
        self._queue: asyncio.Queue[WireMessage | Exception] = asyncio.Queue()

    async def __aenter__(self) -> FakeStt:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.closed = True

    async def send_audio(self, pcm: np.ndarray) -> None:
        if self.closed:
            raise BackendUnavailable("STT", "connection lost")
        self.audio_samples += pcm.size

    async def send_marker(self, marker_id: int) -> None:
        """As the real STT: the flushed words, then the echo (its flush silence makes no Step)."""
        for text in self.words_at_flush:
            self.word(text)
        self._queue.put_nowait(MarkerOut(id=marker_id))

    def word(self, text: str, ago_s: float = 0.0) -> None:
        """A word that began `ago_s` before the audio stepped so far ends (0: just spoken)."""
        self._queue.put_nowait(Word(text=text, start_time=max(0.0, self.clock_s - ago_s)))

    def steps(self, prs: list[float], count: int) -> None:
        for n in range(count):
            self._queue.put_nowait(Step(step_idx=n, prs=prs, buffered_pcm=0))
            self.clock_s += FRAME_SECONDS

    def drained(self) -> bool:
        """Every message pushed so far has been read (and handled: the session does so at once)."""
        return self._queue.empty()

    def drop(self) -> None:
        """The service goes away: the reading side sees a lost connection."""
        self._queue.put_nowait(BackendUnavailable("STT", "connection lost (test)"))

    async def events(self) -> AsyncIterator[WireMessage]:
        while True:
            message = await self._queue.get()
            if isinstance(message, Exception):
                raise message
            yield message


class FakeTts:
    """Each word comes back as its timed `Text` and `FRAMES_PER_WORD` frames of audio."""

    def __init__(self, voice: str | None) -> None:
        self.voice = voice
        self.words: list[str] = []
        self.closed = False
        self._queue: asyncio.Queue[WireMessage | None] = asyncio.Queue()
        self._at_s = 0.0

    async def __aenter__(self) -> FakeTts:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.closed = True

    async def send_word(self, word: str) -> None:
        self.words.append(word)
        length = FRAMES_PER_WORD * FRAME_SIZE / SAMPLE_RATE
        self._queue.put_nowait(TextOut(text=word, start_s=self._at_s, stop_s=self._at_s + length))
        for _ in range(FRAMES_PER_WORD):
            self._queue.put_nowait(AudioOut(pcm=np.zeros(FRAME_SIZE, np.float32)))
        self._at_s += length

    async def send_eos(self) -> None:
        self._queue.put_nowait(None)

    async def events(self) -> AsyncIterator[WireMessage]:
        while (message := await self._queue.get()) is not None:
            yield message


class FakeLlm:
    """Streams `reply` word by word, then `calls` (name, arguments) as tool-call pieces, the
    arguments in `ARGUMENT_PIECES` pieces; with `gate` set up, each delta from the
    `gate_from`-th on (the second by default) waits for it."""

    ARGUMENT_PIECES = 3

    def __init__(
        self, reply: str = "Hello there, how can I help?", calls: list[tuple[str, str]] | None = None
    ):
        self.reply = reply
        self.calls = calls or []
        self.requests: list[list[ChatMessage]] = []
        self.llm_requests: list[LlmRequest] = []
        self.gate: asyncio.Event | None = None
        self.gate_from = 1
        self.first_token_sent = asyncio.Event()
        self.fault: Exception | None = None

    def _deltas(self) -> list[LlmDelta]:
        # A whole word at once: the TTS gets it without waiting for the next.
        out: list[LlmDelta] = [word + " " for word in self.reply.split()]
        for index, (name, arguments) in enumerate(self.calls):
            out.append(ToolCallDelta(index, f"call_{index}", name))
            size = -(-len(arguments) // self.ARGUMENT_PIECES)
            out += [
                ToolCallDelta(index, arguments=arguments[i : i + size])
                for i in range(0, len(arguments), size)
            ]
        return out

    async def stream(self, request: LlmRequest) -> AsyncIterator[LlmDelta]:
        self.requests.append(request.messages)
        self.llm_requests.append(request)
        for n, delta in enumerate(self._deltas()):
            if n == 1:
                self.first_token_sent.set()
                if self.fault is not None:
                    raise self.fault
            if n >= self.gate_from and self.gate is not None:
                await self.gate.wait()
            yield delta
        self.first_token_sent.set()


class FakeTurnModel:
    """An end-of-turn model that says what the test tells it to, and counts its calls."""

    def __init__(self, probability: float) -> None:
        self.probability = probability
        self.calls = 0

    async def end_probability(self, audio: np.ndarray) -> float:
        self.calls += 1
        await asyncio.sleep(0)  # a verdict arrives between steps, as from a worker thread
        return self.probability


class FakeBackends:
    """Hands out fake streams and keeps them for the test to drive and inspect."""

    def __init__(self, llm: FakeLlm | None = None, turn_model: FakeTurnModel | None = None) -> None:
        self.llm = llm or FakeLlm()
        self.turn_model = turn_model
        self.stt_streams: list[FakeStt] = []
        self.tts_streams: list[FakeTts] = []
        self.stt_refusals = 0  # how many of the next STT connects fail
        self.words_at_flush: list[str] = []  # what the STT streams opened from now on hear

    async def open_stt(self) -> FakeStt:
        if self.stt_refusals:
            self.stt_refusals -= 1
            raise BackendUnavailable("STT", "refused (test)")
        self.stt_streams.append(FakeStt(self.words_at_flush))
        return self.stt_streams[-1]

    async def open_tts(self, voice: str | None) -> FakeTts:
        self.tts_streams.append(FakeTts(voice))
        return self.tts_streams[-1]

    @property
    def stt(self) -> FakeStt:
        """The STT stream that is up now."""
        return self.stt_streams[-1]


async def hear(session: VoiceSession, backends: FakeBackends, prs: list[float], frames: int) -> None:
    """`frames` frames of the user's audio, and the STT's steps for them."""
    await session.append_audio(np.zeros(frames * FRAME_SIZE, np.float32))
    backends.stt.steps(prs, frames)


async def until(condition: Callable[[], object], timeout_s: float = 5.0) -> None:
    """Wait for `condition()` to hold (the session works in its own tasks)."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 (the conditions are the session's own state)
            await asyncio.sleep(0.005)
