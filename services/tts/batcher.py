"""The TTS batcher: B fixed slots, one batched engine step per round of the shared step loop.

Sessions add words and `Eos` to their slot's pending input; the loop hands everything
pending to the engine in one step (run in the step thread, services.common.steploop) and
routes the frames and timed words that come out to each slot's outbox. A `None` in the
outbox means the stream is over (the session then closes). The loop sleeps when no slot
can make progress (every stream is waiting for words).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from kit.protocol import AudioOut, Error, WireMessage
from services.common.steploop import Batch, StepLoop
from services.tts import metrics
from services.tts.engines.base import SlotInput, SlotOutput, StepResult, StreamStart, TtsEngine
from services.tts.text import Word

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class TtsSlot:
    """One stream's place in the batch."""

    index: int
    outbox: asyncio.Queue[WireMessage | None] = field(default_factory=asyncio.Queue)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    pending: SlotInput | None = None
    started: bool = False
    first_word_at: float | None = None
    audio_seen: bool = False

    def _input(self) -> SlotInput:
        if self.pending is None:
            self.pending = SlotInput(self.index)
        return self.pending


class TtsBatcher(StepLoop[TtsSlot]):
    """Owns the engine and the slots; says what each step of the shared loop is."""

    def __init__(self, engine: TtsEngine) -> None:
        super().__init__("tts", engine.batch_size)
        self.engine = engine
        self._stopping: dict[int, TtsSlot] = {}  # left by their client, to be stopped in the engine

    @property
    def used_slots(self) -> int:
        return len(self._slots) + len(self._stopping)

    def open(self) -> TtsSlot | None:
        """Reserve a slot (the stream starts with `start`), or None when all are in use."""
        if not self._free:
            metrics.STREAMS.capacity_rejections.inc()
            return None
        slot = TtsSlot(self._free.pop())
        self._slots[slot.index] = slot
        metrics.STREAMS.connects.inc()
        metrics.STREAMS.open_streams.set(self.used_slots)
        return slot

    def start(self, slot: TtsSlot, start: StreamStart) -> None:
        """Begin generation in the slot with this voice and CFG."""
        slot._input().start = start
        slot.started = True
        self.wake()

    def push_words(self, slot: TtsSlot, words: list[Word]) -> None:
        """Queue words for the slot (after `start`)."""
        if words and slot.first_word_at is None:
            slot.first_word_at = time.perf_counter()
        slot._input().words.extend(words)
        self.wake()

    def push_eos(self, slot: TtsSlot) -> None:
        """No more words will come for this stream."""
        slot._input().eos = True
        self.wake()

    def close(self, slot: TtsSlot) -> None:
        """The client is gone; the engine drops the stream at the next step."""
        if self._slots.get(slot.index) is slot:
            del self._slots[slot.index]
            if slot.started:
                self._stopping[slot.index] = slot
                self.wake()
            else:
                self.release(slot)
            metrics.STREAMS.open_streams.set(self.used_slots)
            slot.outbox.put_nowait(None)

    def next_step(self) -> Batch[StepResult]:
        """Everything pending, including streams to stop; a step runs even without new input,
        because the engine may still have audio to generate."""
        inputs = [SlotInput(index, stop=True) for index in self._stopping]
        for slot in self._slots.values():
            if slot.pending is not None:
                inputs.append(slot.pending)
                slot.pending = None
        owners = dict(self._slots)
        stopped = list(self._stopping.values())
        started = time.perf_counter()

        def deliver(result: StepResult) -> bool:
            if result.progressed:
                metrics.STREAMS.step_seconds.observe(time.perf_counter() - started)
            for slot in stopped:
                del self._stopping[slot.index]
                self.release(slot)
            for index, output in result.outputs.items():
                slot = owners.get(index)
                if slot is not None and self._slots.get(index) is slot:
                    self._deliver(slot, output)
            metrics.STREAMS.open_streams.set(self.used_slots)
            return (
                result.progressed
                or bool(self._stopping)
                or any(s.pending is not None for s in self._slots.values())
            )

        return Batch(compute=lambda: self.engine.step(inputs), deliver=deliver)

    def _deliver(self, slot: TtsSlot, output: SlotOutput) -> None:
        if output.error is not None:
            slot.outbox.put_nowait(Error(message=output.error))
        if output.frames and not slot.audio_seen:
            slot.audio_seen = True
            if slot.first_word_at is not None:
                metrics.FIRST_AUDIO_SECONDS.observe(time.perf_counter() - slot.first_word_at)
        for frame in output.frames:
            slot.outbox.put_nowait(AudioOut(pcm=frame))
        metrics.STREAMS.frames.inc(len(output.frames))
        for word in output.words:
            slot.outbox.put_nowait(word)
        if output.done:
            del self._slots[slot.index]
            self.release(slot)
            slot.outbox.put_nowait(None)
