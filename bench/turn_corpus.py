"""The spoken corpus of bench/turns.py: user turns synthesised with espeak-ng, at 24 kHz.

Kinds of turn (`KINDS`):

- ``question``: one complete question;
- ``hesitation``: speech, then 600-900 ms of silence or an "um" between short silences,
  then the rest of the sentence ("I'd like to book ... um ... a table for two");
- ``list``: items read with 500-800 ms pauses between them;
- ``backchannel``, ``cough``, ``click``: a complete question, plus a short "mm-hm" /
  "yeah", a synthesised cough or a pair of clicks that the bench plays while the reply
  to that question is being played out (an interjection that is no interruption).

Each piece of speech is normalised to the same loudness (`SPEECH_RMS`) and its voiced
extent is measured (espeak-ng pads a little silence around what it says), so a turn
knows exactly where its speech lies. The background noise that `background_noise`
makes is mixed in by the bench's microphone, under everything it streams, at the SNR
asked for relative to that loudness. Everything is deterministic for a given seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

from kit.audio import SAMPLE_RATE, resample
from services.tts.engines.espeak_library import EspeakLibrary

Pcm = npt.NDArray[np.float32]

KINDS = ("question", "hesitation", "list", "backchannel", "cough", "click")
INTERJECTIONS = ("backchannel", "cough", "click")  # kinds played over the reply
MID_TURN_PAUSES = ("hesitation", "list")  # kinds whose pauses are no end of turn

SPEECH_RMS = 0.08  # about -22 dBFS: a close microphone
_ACTIVE = 0.02  # |sample| / peak above which a sample counts as sound, when trimming
_ESPEAK_RATE = 1  # espeak_SetParameter's espeakRATE: words per minute
MIN_RATE = 80  # espeak-ng's slowest

QUESTIONS = (
    "What is the weather going to be like tomorrow in Paris?",
    "Can you tell me how long it takes to boil an egg?",
    "How far away is the moon from the earth?",
    "What time does the last train to London leave?",
    "Could you recommend a good book about history?",
    "Why is the sky blue during the day?",
    "How do I reset the password on my computer?",
    "What should I cook for dinner tonight?",
)
HESITATIONS = (
    ("I would like to book", "a table for two tonight."),
    ("Can you remind me to", "call my sister tomorrow morning?"),
    ("I was wondering if", "you could help me plan a trip."),
    ("What is the best way to", "get to the airport from here?"),
    ("My flight leaves at", "seven in the evening, is that enough time?"),
    ("Could you set an alarm for", "six thirty tomorrow?"),
    ("I think the problem is", "that my laptop will not start."),
    ("Tell me about", "the history of the Roman empire."),
)
LISTS = (
    ("I need eggs,", "milk,", "bread,", "and some butter."),
    ("My favourite colours are red,", "green,", "and blue."),
    ("Please add apples,", "oranges,", "bananas,", "and grapes to the list."),
    ("The meeting is on Monday,", "Wednesday,", "and Friday."),
    ("Please call John,", "Mary,", "and Peter."),
    ("We visited Rome,", "Florence,", "and Venice last summer."),
)
# espeak-ng spells "mm-hm" out letter by letter; "hmm" is the closest it says as a sound.
BACKCHANNELS = ("hmm", "yeah", "uh-huh", "right")
FILLERS = ("um", "uh")  # drawn out: spoken at half the turn's rate

# espeak-ng language code + variant, and speaking rates (words per minute).
FULL_VOICES = ("en-us+m1", "en-us+f3", "en-gb-x-rp+m3", "en-us+f2")
FULL_RATES = (145, 175, 205)
SHORT_VOICES = ("en-us",)
SHORT_RATES = (160,)
# Turns per kind: the full corpus, and the short one CI runs.
FULL_COUNTS = {"question": 8, "hesitation": 8, "list": 6, "backchannel": 6, "cough": 3, "click": 3}
SHORT_COUNTS = {"question": 2, "hesitation": 1, "list": 1, "backchannel": 1, "cough": 1, "click": 1}


@dataclass(frozen=True)
class Turn:
    """One user turn: its audio, where its speech is, and what to play over the reply."""

    name: str
    kind: str
    audio: Pcm  # clean, at SAMPLE_RATE; the microphone adds the noise
    speech: tuple[tuple[int, int], ...]  # [start, end) sample spans of speech in `audio`
    interjection: Pcm | None = None  # played while the reply to `audio` is heard

    @property
    def end_of_speech(self) -> int:
        """The sample where the user's last word ends."""
        return self.speech[-1][1]


def _trim(pcm: Pcm) -> Pcm:
    """Cut espeak-ng's leading and trailing silence."""
    active = np.flatnonzero(np.abs(pcm) > _ACTIVE * max(float(np.abs(pcm).max()), 1e-9))
    return pcm[active[0] : active[-1] + 1] if active.size else pcm[:0]


def _normalise(pcm: Pcm) -> Pcm:
    rms = float(np.sqrt(np.mean(pcm**2))) if pcm.size else 0.0
    return (pcm * (SPEECH_RMS / rms)).astype(np.float32) if rms > 0 else pcm


def _silence(seconds: float) -> Pcm:
    return np.zeros(round(seconds * SAMPLE_RATE), np.float32)


class Synthesiser:
    """espeak-ng (the `espeakng-loader` library the TTS lite engine uses) at a chosen rate."""

    def __init__(self) -> None:
        import ctypes

        import espeakng_loader

        self._espeak = EspeakLibrary()
        self._codes = self._espeak.voices()
        # Same shared object, so the same process-wide espeak-ng state: the rate set here
        # applies to the next synthesis, whichever voice it selects.
        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())

    def speak(self, text: str, voice: str, rate: int) -> Pcm:
        """`text` spoken by `voice` (``code[+variant]``) at `rate` words per minute, trimmed,
        normalised to `SPEECH_RMS`, at SAMPLE_RATE."""
        code, plus, variant = voice.partition("+")
        if self._lib.espeak_SetParameter(_ESPEAK_RATE, rate, 0) != 0:
            raise RuntimeError(f"espeak-ng refused the rate {rate}")
        pcm16, _ = self._espeak.synthesize(text, self._codes[code] + plus + variant)
        pcm = resample(pcm16.astype(np.float32) / 32768.0, self._espeak.sample_rate, SAMPLE_RATE)
        return _normalise(_trim(pcm))


def _join(pieces: list[Pcm | float]) -> tuple[Pcm, tuple[tuple[int, int], ...]]:
    """Concatenate speech pieces and pauses (floats, in seconds); the speech pieces' spans."""
    parts, spans, at = [], [], 0
    for piece in pieces:
        pcm = _silence(piece) if isinstance(piece, float) else piece
        if not isinstance(piece, float):
            spans.append((at, at + pcm.size))
        parts.append(pcm)
        at += pcm.size
    return np.concatenate(parts), tuple(spans)


def cough(rng: np.random.Generator) -> Pcm:
    """A synthesised cough: one or two bursts of band-limited noise with a sharp attack and
    a fast decay, as loud as the speech."""
    bursts = []
    for _ in range(int(rng.integers(1, 3))):
        seconds = float(rng.uniform(0.18, 0.3))
        n = round(seconds * SAMPLE_RATE)
        spectrum = np.fft.rfft(rng.standard_normal(n))
        freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
        spectrum[(freqs < 150) | (freqs > 3500)] = 0  # a throat, not a hiss
        t = np.arange(n) / SAMPLE_RATE
        envelope = (1 - np.exp(-t / 0.008)) * np.exp(-t / float(rng.uniform(0.05, 0.09)))
        bursts += [np.fft.irfft(spectrum, n) * envelope, _silence(float(rng.uniform(0.08, 0.15)))]
    return _normalise(np.concatenate(bursts[:-1]).astype(np.float32))


def click(rng: np.random.Generator) -> Pcm:
    """Two sharp clicks (a pen, a tongue): a few milliseconds of broadband decay each,
    peaking above the speech, 100-200 ms apart."""
    parts = []
    for _ in range(2):
        n = round(0.006 * SAMPLE_RATE)
        burst = rng.standard_normal(n) * np.exp(-np.arange(n) / (0.0012 * SAMPLE_RATE))
        parts += [burst / np.abs(burst).max() * 0.6, _silence(float(rng.uniform(0.1, 0.2)))]
    return np.concatenate(parts[:-1]).astype(np.float32)


def background_noise(seconds: float, snr_db: float, rng: np.random.Generator) -> Pcm:
    """Pink-ish noise (a room, a fan) whose level is `snr_db` below `SPEECH_RMS`."""
    n = round(seconds * SAMPLE_RATE)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    spectrum /= np.sqrt(np.maximum(freqs, 20.0))  # 1/f power
    noise = np.fft.irfft(spectrum, n)
    noise *= SPEECH_RMS * 10 ** (-snr_db / 20) / float(np.sqrt(np.mean(noise**2)))
    return noise.astype(np.float32)


@dataclass
class CorpusMaker:
    """Builds the turns; `short` is the CI corpus (fewer turns, one voice and rate)."""

    short: bool = False
    seed: int = 0

    @cached_property
    def _synth(self) -> Synthesiser:
        return Synthesiser()

    def turns(self) -> list[Turn]:
        """The corpus, kinds interleaved (question, hesitation, list, ..., question, ...);
        within a kind, successive turns go through the voices and the rates."""
        rng = np.random.default_rng(self.seed)
        counts = SHORT_COUNTS if self.short else FULL_COUNTS
        voices = SHORT_VOICES if self.short else FULL_VOICES
        rates = SHORT_RATES if self.short else FULL_RATES
        turns = []
        for i in range(max(counts.values())):
            for k, kind in enumerate(KINDS):
                if i < counts[kind]:
                    voice = voices[(i + k) % len(voices)]
                    rate = rates[(i + i // len(voices) + k) % len(rates)]
                    turns.append(self._turn(kind, i, voice, rate, rng))
        return turns

    def _turn(self, kind: str, i: int, voice: str, rate: int, rng: np.random.Generator) -> Turn:
        def say(text: str, slower: float = 1.0) -> Pcm:
            return self._synth.speak(text, voice, max(MIN_RATE, round(rate / slower)))

        name = f"{kind}-{i + 1} {voice}@{rate}"
        if kind == "hesitation":
            before, after = HESITATIONS[i % len(HESITATIONS)]
            if i % 2:  # a filled pause: "um" between short silences
                pause: list[Pcm | float] = [
                    float(rng.uniform(0.2, 0.35)),
                    say(FILLERS[i // 2 % len(FILLERS)], slower=2),
                    float(rng.uniform(0.3, 0.45)),
                ]
            else:
                pause = [float(rng.uniform(0.6, 0.9))]
            audio, speech = _join([say(before), *pause, say(after)])
            return Turn(name, kind, audio, speech)
        if kind == "list":
            items = LISTS[i % len(LISTS)]
            pieces: list[Pcm | float] = [say(items[0])]
            for item in items[1:]:
                pieces += [float(rng.uniform(0.5, 0.8)), say(item)]
            audio, speech = _join(pieces)
            return Turn(name, kind, audio, speech)
        # A question, on its own or with what is played over its reply.
        audio, speech = _join([say(QUESTIONS[(i + KINDS.index(kind)) % len(QUESTIONS)])])
        interjection = None
        if kind == "backchannel":
            interjection = say(BACKCHANNELS[i % len(BACKCHANNELS)])
        elif kind == "cough":
            interjection = cough(rng)
        elif kind == "click":
            interjection = click(rng)
        return Turn(name, kind, audio, speech, interjection)
