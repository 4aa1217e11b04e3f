"""The STT batcher: B fixed slots, one batched model step per round of the shared step loop.

Each connection holds one slot. Its audio goes into the slot's `FrameBuffer`; whenever
any slot has a whole frame, the loop gathers one frame from every such slot, runs the
engine in the step thread (services.common.steploop), and puts the resulting messages in
each slot's outbox. Steps follow each other as fast as compute allows, so audio queued ahead
(a file, a flush) is processed faster than real time.

Words may come later than their step (`SttEngine.late_words`): every step collects them too, and
an engine with news wakes the loop, which then collects without stepping. A `Marker` tells the
engine where the client's audio stands (`SttEngine.flush`), pushes the engine's delay through
in silence (frames that produce no `Step`: every `Step` is a frame of the client's audio), and
is echoed once its audio is stepped through and the engine owes no words for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from kit.audio import FRAME_SIZE, FrameBuffer, Pcm
from kit.protocol import Error, MarkerOut, Step, WireMessage
from services.common.steploop import Batch, StepLoop
from services.stt import metrics
from services.stt.engines.base import FrameResult, LateWords, SttEngine

logger = logging.getLogger(__name__)

#: Markers one stream may have waiting for their flush; each costs no memory beyond its
#: entry (silence is only queued for new audio), the cap keeps a flood from growing the deque.
MAX_PENDING_MARKERS = 256


class Frame(enum.Enum):
    """What a frame handed to the engine is."""

    PREFIX = "prefix"  # the engine's silence before the client's audio: no Step, not counted
    AUDIO = "audio"  # the client's audio: a Step
    FLUSH_SILENCE = "flush silence"  # a Marker's silence: counted for the Marker, no Step


@dataclass(eq=False)
class SttSlot:
    """One stream's place in the batch, and everything the loop knows about it."""

    index: int
    max_buffered: int
    prefix_frames: int
    outbox: asyncio.Queue[WireMessage | None] = field(default_factory=asyncio.Queue)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    buffer: FrameBuffer = field(default_factory=FrameBuffer)
    frames_taken: int = 0  # client/flush frames handed to the engine
    frames_done: int = 0  # ... and whose results came back
    hidden_left: int = 0
    markers: deque[tuple[int, int]] = field(default_factory=deque)  # (frames_done target, id)
    flushes: deque[int] = field(default_factory=deque)  # frames_taken where a Marker came
    silence: deque[tuple[int, int]] = field(default_factory=deque)  # flush silence: [first, end) frames
    words_owed_from: int | None = None  # first client frame whose words the engine still owes
    audio_since_flush: bool = False
    flushed_to: int = 0  # frames_taken once the latest flush's silence is through
    needs_reset: bool = True
    _space: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.hidden_left = self.prefix_frames
        self._space.set()

    def has_frame(self) -> bool:
        return self.hidden_left > 0 or self.buffer.full_frames > 0

    def take_frame(self) -> tuple[Pcm, Frame]:
        """Next frame for the model, and what it is."""
        if self.hidden_left > 0:
            self.hidden_left -= 1
            return np.zeros(FRAME_SIZE, dtype=np.float32), Frame.PREFIX
        frame = self.buffer.pop_frame()
        assert frame is not None
        kind = Frame.AUDIO
        if self.silence and self.silence[0][0] <= self.frames_taken:
            kind = Frame.FLUSH_SILENCE
            if self.frames_taken + 1 >= self.silence[0][1]:
                self.silence.popleft()
        self.frames_taken += 1
        if len(self.buffer) <= self.max_buffered:
            self._space.set()
        return frame, kind

    def flush_due(self) -> bool:
        """A Marker's flush is due: every frame before it has been stepped."""
        if self.flushes and self.flushes[0] <= self.frames_taken:
            self.flushes.popleft()
            return True
        return False

    async def wait_for_space(self) -> None:
        """Return once the buffer is below its limit (back-pressure on a fast sender)."""
        if len(self.buffer) > self.max_buffered:
            self._space.clear()
            await self._space.wait()


class SttBatcher(StepLoop[SttSlot]):
    """Owns the engine and the slots; says what each step of the shared loop is."""

    def __init__(self, engine: SttEngine, max_buffered_samples: int) -> None:
        super().__init__("stt", engine.batch_size)
        self.engine = engine
        self.max_buffered_samples = max_buffered_samples
        self._frames = np.zeros((engine.batch_size, FRAME_SIZE), dtype=np.float32)
        self.step_idx = 0
        self._collect_due = False
        self._owing: set[int] = set()  # slots the engine said owe words, at the last collect

    async def run(self) -> None:
        """The shared step loop, with the engine able to wake it from its own threads."""
        loop = asyncio.get_running_loop()

        def wake_from_thread() -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: the service is stopping
                loop.call_soon_threadsafe(self._late_words_ready)

        self.engine.set_waker(wake_from_thread)
        await super().run()

    def _late_words_ready(self) -> None:
        self._collect_due = True
        self.wake()

    def open(self) -> SttSlot | None:
        """Take a free slot for a new stream, or None when all are in use."""
        if not self._free:
            metrics.STREAMS.capacity_rejections.inc()
            return None
        slot = SttSlot(self._free.pop(), self.max_buffered_samples, self.engine.prefix_frames)
        self._slots[slot.index] = slot
        metrics.STREAMS.connects.inc()
        metrics.STREAMS.open_streams.set(len(self._slots))
        self.wake()
        return slot

    def close(self, slot: SttSlot) -> None:
        """Give the slot back; its state is reset when the next stream takes it."""
        if self._slots.get(slot.index) is slot:
            del self._slots[slot.index]
            self.release(slot)
            metrics.STREAMS.open_streams.set(len(self._slots))
            slot.outbox.put_nowait(None)

    def push_audio(self, slot: SttSlot, pcm: Pcm) -> None:
        """Queue client samples for the slot."""
        slot.buffer.push(pcm)
        if pcm.size:
            slot.audio_since_flush = True
        if slot.buffer.full_frames:
            self.wake()

    def push_marker(self, slot: SttSlot, marker_id: int) -> None:
        """Flush: everything sent so far plus the model delay in silence, then echo the marker.

        A marker with no audio since the previous flush needs no silence of its own: it is
        echoed with (or right after) the markers before it. At most `MAX_PENDING_MARKERS`
        wait per stream; one more is answered with an `Error` and not echoed.
        """
        if len(slot.markers) >= MAX_PENDING_MARKERS:
            metrics.STREAMS.protocol_errors.labels("markers").inc()
            slot.outbox.put_nowait(
                Error(
                    message=f"Marker {marker_id} ignored: {MAX_PENDING_MARKERS} Markers are already "
                    "waiting for their audio to be processed"
                )
            )
            return
        if slot.audio_since_flush:
            slot.buffer.pad_to_frame()
            audio_end = slot.frames_taken + slot.buffer.full_frames
            slot.flushes.append(audio_end)
            if self.engine.delay_frames:
                slot.buffer.push(np.zeros(self.engine.delay_frames * FRAME_SIZE, dtype=np.float32))
                slot.silence.append((audio_end, audio_end + self.engine.delay_frames))
            slot.audio_since_flush = False
            slot.flushed_to = slot.frames_taken + slot.buffer.full_frames
            self.wake()
        slot.markers.append((slot.flushed_to, marker_id))
        self._release_markers(slot)
        if slot.markers:
            self.wake()

    def next_step(self) -> Batch[tuple[list[FrameResult | None] | None, LateWords]] | None:
        """One frame from every slot that has one, or the engine's late words when it woke us."""
        # A slot that has not stepped yet (needs_reset) has no stream in the engine to flush.
        flush = [s.index for s in self._slots.values() if not s.needs_reset and s.flush_due()]
        ready = [s for s in self._slots.values() if s.has_frame()]
        if not ready:
            if not (self._collect_due or flush):
                return None
            self._collect_due = False

            def flush_and_collect() -> tuple[None, LateWords]:
                self.engine.flush(flush)
                return None, self.engine.late_words()

            return Batch(compute=flush_and_collect, deliver=self._deliver_late)
        self._collect_due = False
        active = np.zeros(self.engine.batch_size, dtype=bool)
        kinds = {}
        reset = []
        for slot in ready:
            self._frames[slot.index], kinds[slot.index] = slot.take_frame()
            active[slot.index] = True
            if slot.needs_reset:
                reset.append(slot.index)
                slot.needs_reset = False
        started = time.perf_counter()

        def compute() -> tuple[list[FrameResult | None], LateWords]:
            if flush:
                self.engine.flush(flush)
            return self.engine.step(frames, active, reset), self.engine.late_words()

        def deliver(out: tuple[list[FrameResult | None] | None, LateWords]) -> bool:
            results = out[0]
            assert results is not None
            metrics.STREAMS.step_seconds.observe(time.perf_counter() - started)
            metrics.STEP_OCCUPANCY.observe(len(ready))
            metrics.STREAMS.frames.inc(len(ready))
            # The late words are for earlier audio, and what is owed is as of after this step.
            self._deliver_late(out)
            for slot in ready:
                result = results[slot.index]
                if result is not None and self._slots.get(slot.index) is slot:
                    self._deliver(slot, result, kinds[slot.index])
            self.step_idx += 1
            return True

        frames = self._frames
        return Batch(compute=compute, deliver=deliver)

    def _deliver(self, slot: SttSlot, result: FrameResult, kind: Frame) -> None:
        for event in result.events:
            slot.outbox.put_nowait(event)
        if kind is Frame.PREFIX:
            return
        slot.frames_done += 1
        if kind is Frame.AUDIO:
            step = Step(step_idx=self.step_idx, prs=result.prs, buffered_pcm=len(slot.buffer))
            slot.outbox.put_nowait(step)
        self._release_markers(slot)

    def _deliver_late(self, out: tuple[object, LateWords]) -> bool:
        """Route the engine's late words to the streams they belong to, then echo what Markers
        they were holding back."""
        late = out[1]
        owing = set(late.owed_from)
        for index in owing | self._owing | late.events.keys():
            slot = self._slots.get(index)
            if slot is None or slot.needs_reset:
                continue  # a stream that ended, or a new one the engine has not seen: none are its
            for event in late.events.get(index, ()):
                slot.outbox.put_nowait(event)
            owed = late.owed_from.get(index)
            slot.words_owed_from = None if owed is None else owed - self.engine.prefix_frames
            self._release_markers(slot)
        self._owing = owing
        return True

    def _release_markers(self, slot: SttSlot) -> None:
        """Echo the Markers whose audio is stepped through and fully transcribed."""
        while slot.markers:
            target, marker_id = slot.markers[0]
            owed = slot.words_owed_from
            if target > slot.frames_done or (owed is not None and owed < target):
                return
            slot.markers.popleft()
            slot.outbox.put_nowait(MarkerOut(id=marker_id))
