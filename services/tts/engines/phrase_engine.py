"""The batched slot interface for engines that synthesise a phrase at a time (espeak-ng, Piper).

Words are gathered per slot until a phrase is complete (`phrasing.PhrasePolicy`), then the
engine's voice speaks it, in pieces of bounded cost. A step speaks one piece, for the slot
that is most due (`_Slot.due`): a new stream's first phrase comes before everything else, so
its first audio waits for at most the piece in progress, however many streams are speaking or
however long their texts; the others take turns (the longest waiting first), except that a
stream whose listener has already run out of audio comes before those that have not. A
stream far ahead of real time thus still gets its audio at an even pace, never in bursts
with seconds between them.

Voices synthesise at their own rate; each slot resamples to 24 kHz with a stateful soxr
stream, so phrases join without a click, and the stream's timeline (where words start) is
counted in the voice's own samples. A word's stop is where the next word of its phrase
starts, or the end of its phrase, so a stop includes any pause after it. The end of the
stream flushes the resampler and pads the last frame with silence.

A failure in one slot (a voice that cannot be used, synthesis that raises) ends that stream
alone with an `Error`; the others go on.
"""

from __future__ import annotations

import abc
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt
import soxr

from kit.audio import SAMPLE_RATE, FrameBuffer
from kit.protocol import TextOut
from services.tts.engines.base import SlotInput, SlotOutput, StepResult, TtsEngine, VoiceError
from services.tts.engines.phrasing import PhrasePolicy
from services.tts.text import Word

logger = logging.getLogger(__name__)

#: moshi-server clamps its output to this.
PEAK = 0.99


@dataclass
class Speech:
    """One piece of a phrase's audio, and where the words that start in it start."""

    pcm: npt.NDArray[np.float32]  # mono, at the voice's sample rate
    #: (index of the word in the phrase, sample of `pcm` where it starts), in word order.
    starts: list[tuple[int, int]] = field(default_factory=list)


class PhraseVoice(Protocol):
    """A voice that speaks a phrase (a list of words) in pieces."""

    sample_rate: int

    def speak(self, words: list[str]) -> list[Callable[[], Speech]]:
        """The phrase's pieces, in order, each synthesised when called. A word with no start in
        any piece (a symbol with nothing to say) is placed where the next word starts."""


@dataclass
class _Phrase:
    words: list[str]
    pieces: deque[Callable[[], Speech]]
    started: int = 0  # words of the phrase that have a start


@dataclass
class _Slot:
    voice: PhraseVoice
    created: float
    resampler: soxr.ResampleStream
    words: list[Word] = field(default_factory=list)
    phrase: _Phrase | None = None
    #: The last word that started, sent (with its stop) once the next starts or its phrase ends.
    open_word: tuple[str, int] | None = None
    timed: list[TextOut] = field(default_factory=list)  # words ready to send
    audio: FrameBuffer = field(default_factory=FrameBuffer)
    samples: int = 0  # voice-rate samples spoken so far: where the next piece starts
    first_audio_at: float | None = None
    last_audio_at: float = 0.0
    spoke: bool = False  # a phrase with words (not only a pause) has been spoken
    eos: bool = False
    flushed: bool = False

    def due(self) -> tuple[bool, float]:
        """Smallest first: a stream with no audio yet, by when it started; then the others, by
        their last piece, or by when their listener ran out of audio (playing it in real time
        from its first audio on) where that was earlier."""
        if self.first_audio_at is None:
            return False, self.created
        runs_out = self.first_audio_at + self.samples / self.voice.sample_rate
        return True, min(runs_out, self.last_audio_at)

    def seconds(self, sample: int) -> float:
        return round(sample / self.voice.sample_rate, 3)


class PhraseEngine(TtsEngine):
    """Slots, scheduling and the audio timeline; a subclass gives the voices and the policy."""

    policy: PhrasePolicy

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self._slots: list[_Slot | None] = [None] * batch_size

    @abc.abstractmethod
    def _open(self, voice: str) -> PhraseVoice:
        """The voice a stream asked for; raises `VoiceError` if it cannot be used."""

    def step(self, inputs: Sequence[SlotInput]) -> StepResult:
        """Apply the inputs, speak the next piece of the stream that needs audio first, and hand
        out every whole frame and timed word that is ready."""
        outputs: dict[int, SlotOutput] = {}
        for item in inputs:
            try:
                self._apply(item)
            except Exception as exc:
                outputs[item.slot] = self._fail(item.slot, exc)
        ready = [
            (slot.due(), index, slot)
            for index, slot in enumerate(self._slots)
            if slot is not None and self._has_work(slot)
        ]
        if ready:
            _, due, slot = min(ready, key=lambda entry: entry[:2])
            try:
                self._speak_piece(slot)
            except Exception as exc:
                outputs[due] = self._fail(due, exc)
        for index, slot in enumerate(self._slots):
            if slot is None:
                continue
            out = self._collect(slot)
            if out.done:
                self._slots[index] = None
            if out.frames or out.words or out.done:
                outputs[index] = out
        return StepResult(outputs, progressed=bool(ready) or bool(outputs))

    def _apply(self, item: SlotInput) -> None:
        if item.start is not None:
            self._slots[item.slot] = None
            if not isinstance(item.start.voice, str):
                raise VoiceError(f"the {self.name} engine takes no voice embeddings")
            voice = self._open(item.start.voice)
            resampler = soxr.ResampleStream(voice.sample_rate, SAMPLE_RATE, 1, dtype="float32")
            self._slots[item.slot] = _Slot(voice=voice, created=time.monotonic(), resampler=resampler)
        if item.stop:
            self._slots[item.slot] = None
        slot = self._slots[item.slot]
        if slot is not None:
            slot.words.extend(item.words)
            slot.eos |= item.eos

    def _fail(self, index: int, exc: Exception) -> SlotOutput:
        self._slots[index] = None
        if isinstance(exc, VoiceError):
            return SlotOutput(done=True, error=f"cannot use this voice: {exc}")
        logger.exception("%s failed on one stream; it was ended", self.name, extra={"slot": index})
        return SlotOutput(done=True, error=f"speech synthesis failed for this stream: {exc}")

    def _has_work(self, slot: _Slot) -> bool:
        return slot.phrase is not None or self.policy.next_phrase(slot.words, not slot.spoke, slot.eos) > 0

    def _speak_piece(self, slot: _Slot) -> None:
        """Start the next phrase if none is in progress, then speak its next piece."""
        if slot.phrase is None:
            count = self.policy.next_phrase(slot.words, not slot.spoke, slot.eos)
            phrase = slot.words[:count]
            del slot.words[:count]
            if not phrase[0].text:  # a <break> pause, always a phrase of its own
                self._push(slot, np.zeros(round(phrase[0].pause_s * slot.voice.sample_rate), np.float32))
                return
            texts = [w.text for w in phrase]
            slot.phrase = _Phrase(texts, deque(slot.voice.speak(texts)))
            slot.spoke = True
        phrase = slot.phrase
        if phrase.pieces:
            piece = phrase.pieces.popleft()()
            for word, sample in piece.starts:
                self._start_words(slot, word + 1, slot.samples + sample)
            self._push(slot, piece.pcm)
        if not phrase.pieces:
            self._start_words(slot, len(phrase.words), slot.samples)
            self._close_word(slot, slot.samples)
            slot.phrase = None

    def _start_words(self, slot: _Slot, until: int, sample: int) -> None:
        """The phrase's words before index `until` that have not started yet start at `sample`."""
        phrase = slot.phrase
        assert phrase is not None
        if slot.open_word is not None:  # a voice's start that went back would make words overlap
            sample = max(sample, slot.open_word[1])
        while phrase.started < until:
            self._close_word(slot, sample)
            slot.open_word = (phrase.words[phrase.started], sample)
            phrase.started += 1

    def _close_word(self, slot: _Slot, stop: int) -> None:
        if slot.open_word is not None:
            text, start = slot.open_word
            slot.timed.append(TextOut(text=text, start_s=slot.seconds(start), stop_s=slot.seconds(stop)))
            slot.open_word = None

    def _push(self, slot: _Slot, pcm: npt.NDArray[np.float32]) -> None:
        if pcm.size:
            slot.audio.push(np.clip(slot.resampler.resample_chunk(pcm), -PEAK, PEAK))
            slot.samples += pcm.size
            slot.last_audio_at = time.monotonic()
            if slot.first_audio_at is None:
                slot.first_audio_at = slot.last_audio_at

    def _collect(self, slot: _Slot) -> SlotOutput:
        """Whole frames and timed words; at the end of the text, the rest of the audio too."""
        out = SlotOutput(words=slot.timed)
        slot.timed = []
        if slot.eos and not slot.words and slot.phrase is None and not slot.flushed:
            tail = slot.resampler.resample_chunk(np.zeros(0, np.float32), last=True)
            slot.audio.push(np.clip(tail, -PEAK, PEAK))
            slot.audio.pad_to_frame()
            slot.flushed = True
        while (frame := slot.audio.pop_frame()) is not None:
            out.frames.append(frame)
        out.done = slot.flushed and len(slot.audio) == 0
        return out
