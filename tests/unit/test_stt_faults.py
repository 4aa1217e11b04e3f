"""Regression tests of issue 13's STT faults that need no service process: the shared step loop
on a failing engine, sphinx with no hypothesis and its decoders, Markers, and MessageParser."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import msgpack
import numpy as np
import pytest
import soundfile
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from services.common.audio import FRAME_SIZE, SAMPLE_RATE, resample
from services.common.protocol import (
    STT_CLIENT_MESSAGES,
    TTS_CLIENT_MESSAGES,
    Error,
    MarkerOut,
    MessageParser,
    ProtocolError,
    Step,
)
from services.common.steploop import StepFailed
from services.stt.batcher import MAX_PENDING_MARKERS, SttBatcher
from services.stt.engines.base import FrameResult, SttEngine
from tests.conftest import FIXTURES


class ScriptedEngine(SttEngine):
    """Silence in, a Step's worth out; raises when told to."""

    name = "scripted"
    pause_source = "none"
    delay_frames = 3
    prefix_frames = 0

    def __init__(self, batch_size: int = 2) -> None:
        self.batch_size = batch_size
        self.fail = False

    def step(self, frames: np.ndarray, active: np.ndarray, reset: Sequence[int]) -> list[FrameResult | None]:
        if self.fail:
            raise RuntimeError("device lost")
        return [FrameResult(prs=[0.0] * 4) if a else None for a in active]


def drain(queue: asyncio.Queue) -> list:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


async def test_a_failing_step_ends_every_stream_with_an_error_and_stops_the_loop():
    engine = ScriptedEngine()
    batcher = SttBatcher(engine, max_buffered_samples=10 * FRAME_SIZE)
    idle, busy = batcher.open(), batcher.open()
    assert idle is not None and busy is not None
    loop = asyncio.create_task(batcher.run())
    batcher.push_audio(busy, np.zeros(FRAME_SIZE, np.float32))
    assert isinstance(await asyncio.wait_for(busy.outbox.get(), 5), Step)
    engine.fail = True
    batcher.push_audio(busy, np.zeros(FRAME_SIZE, np.float32))
    with pytest.raises(StepFailed, match="step error: RuntimeError: device lost"):
        await asyncio.wait_for(loop, 5)
    for slot in (idle, busy):
        error, end = drain(slot.outbox)
        assert isinstance(error, Error) and "internal error in the stt engine" in error.message
        assert end is None
    assert batcher.open() is not None  # the slots were handed back


async def test_repeated_markers_queue_no_silence_and_are_capped():
    batcher = SttBatcher(ScriptedEngine(), max_buffered_samples=100 * FRAME_SIZE)
    slot = batcher.open()
    assert slot is not None
    batcher.push_audio(slot, np.zeros(100, np.float32))
    batcher.push_marker(slot, 0)
    queued = len(slot.buffer)
    assert queued == (1 + batcher.engine.delay_frames) * FRAME_SIZE
    for i in range(1, MAX_PENDING_MARKERS):
        batcher.push_marker(slot, i)
    assert len(slot.buffer) == queued  # nothing new to flush: no more silence
    batcher.push_marker(slot, 999)
    (refused,) = drain(slot.outbox)
    assert isinstance(refused, Error) and "Marker 999 ignored" in refused.message
    loop = asyncio.create_task(batcher.run())
    markers: list[int] = []
    while len(markers) < MAX_PENDING_MARKERS:
        message = await asyncio.wait_for(slot.outbox.get(), 5)
        if isinstance(message, MarkerOut):
            markers.append(message.id)
    assert markers == list(range(MAX_PENDING_MARKERS))
    batcher.push_marker(slot, 1000)  # everything is transcribed already: echoed at once
    assert drain(slot.outbox) == [MarkerOut(id=1000)]
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop


def _phrase() -> np.ndarray:
    pcm, rate = soundfile.read(FIXTURES / "weather_16k.wav", dtype="float32")
    return resample(pcm, rate, SAMPLE_RATE)


def _feed(engine, pcm: np.ndarray, slot: int, reset: bool) -> list:
    frames = np.zeros((engine.batch_size, FRAME_SIZE), np.float32)
    active = np.zeros(engine.batch_size, bool)
    active[slot] = True
    events = []
    padded = np.concatenate([pcm, np.zeros(2 * SAMPLE_RATE, np.float32)])
    for i, start in enumerate(range(0, len(padded) - FRAME_SIZE + 1, FRAME_SIZE)):
        frames[slot] = padded[start : start + FRAME_SIZE]
        result = engine.step(frames, active, [slot] if reset and i == 0 else [])[slot]
        events.extend(result.events)
    return events


def test_sphinx_utterance_without_hypothesis_gives_no_words(monkeypatch):
    from services.stt.engines import sphinx_engine

    real = sphinx_engine.Decoder

    class NoHypothesis:
        """pocketsphinx as it behaves on the fuzzer's noise: seg() is None."""

        def __init__(self, **kwargs) -> None:
            self._decoder = real(**kwargs)

        def __getattr__(self, name: str):
            return getattr(self._decoder, name)

        def seg(self) -> None:
            return None

    monkeypatch.setattr(sphinx_engine, "Decoder", NoHypothesis)
    engine = sphinx_engine.SphinxSttEngine(1)
    assert _feed(engine, _phrase(), 0, reset=True) == []


def test_sphinx_builds_no_decoder_inside_a_step(monkeypatch):
    from services.stt.engines import sphinx_engine

    engine = sphinx_engine.SphinxSttEngine(3)
    engine.warmup()
    built: list[dict] = []
    real = sphinx_engine.Decoder
    monkeypatch.setattr(sphinx_engine, "Decoder", lambda **kw: built.append(kw) or real(**kw))
    for slot in (1, 2, 0):  # new streams in every slot, one of them reused
        words = _feed(engine, _phrase(), slot, reset=True)
        assert words, "the phrase was not recognised"
    assert built == []


hostile_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30,
)
hostile_messages = st.one_of(
    st.binary(max_size=200),
    hostile_values.map(msgpack.packb),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["Audio", "Marker", "Text", "Eos", "Voice"]) | hostile_values},
        optional={"pcm": hostile_values, "id": hostile_values, "text": hostile_values},
    ).map(msgpack.packb),
    st.integers(1, 5000).map(lambda depth: b"\x91" * depth + b"\x00"),
)


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_messages)
@example(msgpack.packb({"type": "Audio", "pcm": [0.5, 1e300]}))  # beyond float32: numpy used to warn
@example(msgpack.packb({"type": ["x" * 100_000]}))  # echoed back in full, once
def test_message_parser_raises_only_protocol_errors(data: bytes):
    for messages in (STT_CLIENT_MESSAGES, TTS_CLIENT_MESSAGES):
        parser = MessageParser(messages, max_bytes=1 << 20)
        try:
            parser.parse(data)
        except ProtocolError as exc:
            assert len(str(exc)) < 2000  # an Error the client can read, not its own input back


def test_sphinx_cuts_an_utterance_that_never_pauses():
    """Finishing an utterance costs time in proportion to its length, inside the step: 280 s of
    full-scale noise (never a pause) stalled every other stream for seconds at its end."""
    from services.stt.engines.sphinx_engine import MAX_UTTERANCE_S, RATE, SphinxSttEngine

    engine = SphinxSttEngine(1)
    active = np.ones(1, dtype=bool)
    rng = np.random.default_rng(3)
    noise = rng.uniform(-1, 1, int(2.5 * MAX_UTTERANCE_S * SAMPLE_RATE)).astype(np.float32)
    longest, starts = 0.0, set()
    for n, start in enumerate(range(0, noise.size - FRAME_SIZE, FRAME_SIZE)):
        engine.step(noise[start : start + FRAME_SIZE][None, :], active, [0] if n == 0 else [])
        stream = engine._streams[0]
        assert stream is not None
        if stream.in_utterance:
            starts.add(stream.utt_start_s)
            longest = max(longest, stream.samples_in / RATE - stream.utt_start_s)
    assert longest <= MAX_UTTERANCE_S + 0.1
    assert len(starts) >= 3  # the noise was one long "utterance", now cut in pieces
