"""The CPU lite engine: espeak-ng, resampled to 24 kHz, behind the batched TTS interface.

espeak-ng synthesises a whole phrase at once, so words are gathered per slot until a
phrase is complete (sentence punctuation, `PHRASE_WORDS` words, or `Eos`), then spoken;
the first audio therefore leaves before `Eos` once a phrase is in. Word times come from
espeak-ng's own word events (the sample where each word starts); a word's stop is where
the next one starts, or the end of its phrase, so a stop includes any pause after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from services.common.audio import SAMPLE_RATE, FrameBuffer, resample
from services.common.protocol import TextOut
from services.tts.engines.base import SlotInput, SlotOutput, StepResult, TtsEngine
from services.tts.engines.espeak_library import EspeakLibrary
from services.tts.text import Word

PHRASE_WORDS = 8
_PHRASE_END = (".", "!", "?", ";", ":", ",")
DEFAULT_VOICE = "en-us"


@dataclass
class _Slot:
    voice: str
    words: list[Word] = field(default_factory=list)
    audio: FrameBuffer = field(default_factory=FrameBuffer)
    samples_spoken: int = 0  # 24 kHz samples synthesised so far: the start of the next phrase
    eos: bool = False

    def phrase_ready(self) -> bool:
        if not self.words:
            return False
        last = self.words[-1].text
        return (
            self.eos
            or len(self.words) >= PHRASE_WORDS
            or (last.endswith(_PHRASE_END) and len(self.words) > 1)
        )


class EspeakTtsEngine(TtsEngine):
    """espeak-ng, one phrase at a time per slot."""

    name = "espeak"

    def __init__(self, batch_size: int, voice: str | None = None) -> None:
        self.batch_size = batch_size
        self._espeak = EspeakLibrary()
        self._voices = self._espeak.voices()
        self.default_voice = voice or DEFAULT_VOICE
        self.check_voice(self.default_voice)
        self._slots: list[_Slot | None] = [None] * batch_size

    def voices(self) -> list[str]:
        """espeak-ng's language voices."""
        return self._voices

    def step(self, inputs: Sequence[SlotInput]) -> StepResult:
        """Speak every complete phrase, and hand out the whole frames that are ready."""
        outputs: dict[int, SlotOutput] = {}
        for item in inputs:
            if item.start is not None:
                if not isinstance(item.start.voice, str):
                    outputs[item.slot] = SlotOutput(
                        done=True, error="the espeak engine takes no voice embeddings"
                    )
                    continue
                self._slots[item.slot] = _Slot(voice=item.start.voice)
            if item.stop:
                self._slots[item.slot] = None
            slot = self._slots[item.slot]
            if slot is not None:
                slot.words.extend(item.words)
                slot.eos |= item.eos
        progressed = False
        for index, slot in enumerate(self._slots):
            if slot is None:
                continue
            out = SlotOutput()
            if slot.phrase_ready():
                out.words = self._speak(slot)
                progressed = True
            if slot.eos and not slot.words:
                slot.audio.pad_to_frame()
            while (frame := slot.audio.pop_frame()) is not None:
                out.frames.append(frame)
            if slot.eos and not slot.words and len(slot.audio) == 0:
                out.done = True
                self._slots[index] = None
            if out.frames or out.words or out.done:
                outputs[index] = out
        return StepResult(outputs, progressed=progressed or bool(outputs))

    def _speak(self, slot: _Slot) -> list[TextOut]:
        """Synthesise the slot's pending words; a `<break>` pause becomes silence."""
        timed: list[TextOut] = []
        group: list[str] = []
        for word in [*slot.words, Word("", 0.0)]:  # the sentinel flushes the last group
            if word.text:
                group.append(word.text)
                continue
            if group:
                timed += self._speak_group(slot, group)
                group = []
            silence = round(word.pause_s * SAMPLE_RATE)
            slot.audio.push(np.zeros(silence, dtype=np.float32))
            slot.samples_spoken += silence
        slot.words.clear()
        return timed

    def _speak_group(self, slot: _Slot, words: list[str]) -> list[TextOut]:
        text = " ".join(words)
        starts = np.cumsum([0] + [len(w) + 1 for w in words[:-1]]).tolist()
        pcm16, marks = self._espeak.synthesize(text, slot.voice)
        pcm = resample(pcm16.astype(np.float32) / 32768.0, self._espeak.sample_rate, SAMPLE_RATE)
        base = slot.samples_spoken
        slot.audio.push(pcm)
        slot.samples_spoken += pcm.size
        scale = SAMPLE_RATE / self._espeak.sample_rate
        sample_of = {m.char_start: round(m.sample * scale) for m in marks}
        times: list[int] = []
        for start in starts:
            # espeak may merge or split words ("42" -> "forty two"); an unmatched word is
            # placed where the previous one starts rather than invented.
            times.append(sample_of.get(start, times[-1] if times else 0))
        ends = [*times[1:], pcm.size]
        return [
            TextOut(
                text=w, start_s=round((base + a) / SAMPLE_RATE, 3), stop_s=round((base + b) / SAMPLE_RATE, 3)
            )
            for w, a, b in zip(words, times, ends, strict=True)
        ]
