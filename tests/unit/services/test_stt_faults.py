"""Regression tests of issue 13's STT faults that need no service process: the shared step loop
on a failing engine, Markers, and MessageParser (the whisper engine's own are in
tests/stt/test_whisper_engine.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kit.audio import FRAME_SIZE
from kit.protocol import (
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
