"""The CPU multilingual engine: espeak-ng, behind the phrase-at-a-time slot interface.

espeak-ng synthesises a whole phrase at once (`phrase_engine`); a phrase ends at any clause
punctuation past its first word, at `PHRASE_WORDS` words, or, past its first word, at
`PHRASE_CHARS` characters. Word times come from espeak-ng's own word events (the sample
where each word starts).

Voices are espeak-ng's language codes (``en-us``, ``fr-fr``), optionally with a variant
(``en-us+f3``); only those whose data loads are offered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from services.tts.engines.base import VoiceError
from services.tts.engines.espeak_library import EspeakLibrary
from services.tts.engines.phrase_engine import PhraseEngine, Speech
from services.tts.engines.phrasing import PhrasePolicy

logger = logging.getLogger(__name__)

PHRASE_WORDS = 8
PHRASE_CHARS = 120
DEFAULT_VOICE = "en-us"
# espeak-ng costs about 10 ms a phrase, so every phrase may as well be short.
ESPEAK_PHRASES = PhrasePolicy(first_words=PHRASE_WORDS, words=PHRASE_WORDS, chars=PHRASE_CHARS, min_words=2)


@dataclass(frozen=True)
class _EspeakVoice:
    """One espeak-ng voice (identifier with its +variant) of the process-wide library."""

    library: EspeakLibrary
    identifier: str

    @property
    def sample_rate(self) -> int:
        return self.library.sample_rate

    def speak(self, words: list[str]) -> list[Callable[[], Speech]]:
        """A phrase is one piece: espeak-ng is fast enough to speak any phrase at once."""
        return [partial(self._synthesize, words)]

    def _synthesize(self, words: list[str]) -> Speech:
        text = " ".join(words)
        starts = np.cumsum([0] + [len(w) + 1 for w in words[:-1]]).tolist()
        pcm16, marks = self.library.synthesize(text, self.identifier)
        sample_of = {m.char_start: m.sample for m in marks}
        times: list[int] = []
        for start in starts:
            # espeak may merge or split words ("42" -> "forty two"); an unmatched word is
            # placed where the previous one starts rather than invented.
            times.append(sample_of.get(start, times[-1] if times else 0))
        return Speech(pcm16.astype(np.float32) / 32768.0, list(enumerate(times)))


class EspeakTtsEngine(PhraseEngine):
    """espeak-ng, one phrase at a time per slot."""

    name = "espeak"
    policy = ESPEAK_PHRASES

    def __init__(self, batch_size: int, voice: str | None = None) -> None:
        super().__init__(batch_size)
        self._espeak = EspeakLibrary()
        listed = self._espeak.voices()
        self._voices = {code: ident for code, ident in listed.items() if self._espeak.loads(ident)}
        if broken := sorted(listed.keys() - self._voices.keys()):
            logger.warning("espeak-ng voices whose data does not load are left out", extra={"voices": broken})
        self._variants = self._espeak.variants()
        self.default_voice = voice or DEFAULT_VOICE
        self.check_voice(self.default_voice)

    def voices(self) -> list[str]:
        """espeak-ng's language voices that load."""
        return list(self._voices)

    def variants(self) -> list[str]:
        """Variants any voice takes as ``voice+variant`` (``en-us+f3``)."""
        return self._variants

    def check_voice(self, voice: str) -> None:
        """A listed voice, optionally with a listed variant."""
        self._identifier(voice)

    def _open(self, voice: str) -> _EspeakVoice:
        return _EspeakVoice(self._espeak, self._identifier(voice))

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
