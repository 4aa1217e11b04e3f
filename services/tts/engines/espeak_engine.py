"""The CPU lite engine: espeak-ng, resampled to 24 kHz, behind the batched TTS interface.

espeak-ng synthesises a whole phrase at once, so words are gathered per slot until a
phrase is complete (sentence punctuation, `PHRASE_WORDS` words, or `Eos`), then spoken;
the first audio therefore leaves before `Eos` once a phrase is in. A step speaks at most
one phrase per slot (of at most `PHRASE_WORDS` words and, past its first word,
`PHRASE_CHARS` characters), so a long text is spoken over many steps and never holds up
the other slots for longer than a phrase. Word times come from espeak-ng's own word
events (the sample where each word starts); a word's stop is where the next one starts,
or the end of its phrase, so a stop includes any pause after it.

Voices are espeak-ng's language codes (``en-us``, ``fr-fr``), optionally with a variant
(``en-us+f3``); only those whose data loads are offered.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from services.common.audio import SAMPLE_RATE, FrameBuffer, resample
from services.common.protocol import TextOut
from services.tts.engines.base import SlotInput, SlotOutput, StepResult, TtsEngine, VoiceError
from services.tts.engines.espeak_library import EspeakLibrary
from services.tts.text import Word

logger = logging.getLogger(__name__)

PHRASE_WORDS = 8
PHRASE_CHARS = 120
_PHRASE_END = (".", "!", "?", ";", ":", ",")
DEFAULT_VOICE = "en-us"


@dataclass
class _Slot:
    voice: str  # what espeak-ng selects: an identifier, with its +variant
    words: list[Word] = field(default_factory=list)
    audio: FrameBuffer = field(default_factory=FrameBuffer)
    samples_spoken: int = 0  # 24 kHz samples synthesised so far: the start of the next phrase
    eos: bool = False

    def next_phrase(self) -> int:
        """How many of the first words make the next phrase, or 0 while it is incomplete.

        A `<break>` pause is a phrase of its own, and ends the one before it.
        """
        chars = 0
        for i, word in enumerate(self.words[:PHRASE_WORDS]):
            if not word.text:
                return i or 1
            chars += len(word.text) + 1
            if i > 0 and chars > PHRASE_CHARS:
                return i
            if i > 0 and word.text.endswith(_PHRASE_END):
                return i + 1
        if len(self.words) >= PHRASE_WORDS or self.eos:
            return min(len(self.words), PHRASE_WORDS)
        return 0


class EspeakTtsEngine(TtsEngine):
    """espeak-ng, one phrase at a time per slot."""

    name = "espeak"

    def __init__(self, batch_size: int, voice: str | None = None) -> None:
        self.batch_size = batch_size
        self._espeak = EspeakLibrary()
        listed = self._espeak.voices()
        self._voices = {code: ident for code, ident in listed.items() if self._espeak.loads(ident)}
        if broken := sorted(listed.keys() - self._voices.keys()):
            logger.warning("espeak-ng voices whose data does not load are left out", extra={"voices": broken})
        self._variants = self._espeak.variants()
        self.default_voice = voice or DEFAULT_VOICE
        self.check_voice(self.default_voice)
        self._slots: list[_Slot | None] = [None] * batch_size

    def voices(self) -> list[str]:
        """espeak-ng's language voices that load."""
        return list(self._voices)

    def variants(self) -> list[str]:
        """Variants any voice takes as ``voice+variant`` (``en-us+f3``)."""
        return self._variants

    def check_voice(self, voice: str) -> None:
        """A listed voice, optionally with a listed variant."""
        self._identifier(voice)

    def _identifier(self, voice: str) -> str:
        language, plus, variant = voice.partition("+")
        identifier = self._voices.get(language)
        if identifier is None:
            raise VoiceError(f"unknown voice {voice!r}; GET /v1/voices lists the {len(self._voices)} voices")
        if not plus:
            return identifier
        if variant not in self._variants:
            raise VoiceError(f"unknown variant {variant!r} in {voice!r}; GET /v1/voices lists the variants")
        return f"{identifier}+{variant}"

    def step(self, inputs: Sequence[SlotInput]) -> StepResult:
        """Speak the next complete phrase of every slot, and hand out the whole frames that are ready.

        A failure ends only the stream it happened in (with an error), never the others.
        """
        outputs: dict[int, SlotOutput] = {}
        for item in inputs:
            try:
                self._apply(item)
            except Exception as exc:
                outputs[item.slot] = self._fail(item.slot, exc)
        progressed = False
        for index, slot in enumerate(self._slots):
            if slot is None:
                continue
            try:
                out, spoke = self._advance(slot)
            except Exception as exc:
                out, spoke = self._fail(index, exc), True
            progressed |= spoke
            if out.done:
                self._slots[index] = None
            if out.frames or out.words or out.done:
                outputs[index] = out
        return StepResult(outputs, progressed=progressed or bool(outputs))

    def _apply(self, item: SlotInput) -> None:
        if item.start is not None:
            self._slots[item.slot] = None
            if not isinstance(item.start.voice, str):
                raise VoiceError("the espeak engine takes no voice embeddings")
            self._slots[item.slot] = _Slot(voice=self._identifier(item.start.voice))
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
        logger.exception("espeak failed on one stream; it was ended", extra={"slot": index})
        return SlotOutput(done=True, error=f"speech synthesis failed for this stream: {exc}")

    def _advance(self, slot: _Slot) -> tuple[SlotOutput, bool]:
        """Speak the slot's next phrase if it is complete; collect its whole frames."""
        out = SlotOutput()
        count = slot.next_phrase()
        if count:
            phrase = slot.words[:count]
            del slot.words[:count]
            out.words = self._speak(slot, phrase)
        if slot.eos and not slot.words:
            slot.audio.pad_to_frame()
        while (frame := slot.audio.pop_frame()) is not None:
            out.frames.append(frame)
        out.done = slot.eos and not slot.words and len(slot.audio) == 0
        return out, bool(count)

    def _speak(self, slot: _Slot, phrase: list[Word]) -> list[TextOut]:
        """Synthesise one phrase; a `<break>` pause (a phrase of its own) becomes silence."""
        if phrase[0].text:
            return self._speak_group(slot, [w.text for w in phrase])
        silence = round(phrase[0].pause_s * SAMPLE_RATE)
        slot.audio.push(np.zeros(silence, dtype=np.float32))
        slot.samples_spoken += silence
        return []

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
