"""The speech fixture's phrase, and whether a transcript holds it.

devkit/fixtures/weather_16k.wav says "the weather is nice today. one two three." Whisper tiny.en
reads it as "The weather is nice today, 1, 2, 3." (devkit/fixtures/README.md), so transcripts
are compared after `devkit.wer.normalise` (numbers in words, no case or punctuation).
"""

from __future__ import annotations

import itertools

from devkit.wer import normalise

CONTENT_WORDS = frozenset({"weather", "nice", "today", "one", "two", "three"})
# One content word may be misheard: PCM16 rounding of the same audio (-96 dB) turned "The
# weather is" into "Whenever it's" in a 10 s window, and CTranslate2's int8 kernels differ
# between CPUs, so a word may go either way on another machine.
MISSED_AT_MOST = 1


def heard_the_phrase(transcript: str) -> bool:
    """The transcript holds the phrase's content words, all but at most one (it may hold more).

    A word split in two counts as heard: Whisper writes "to day" for "today" in some windows
    (seen beside "Whenever it's" in one LiveKit turn, which made two misses of one slip)."""
    words = normalise(transcript)
    heard = set(words) | {a + b for a, b in itertools.pairwise(words)}
    return len(CONTENT_WORDS - heard) <= MISSED_AT_MOST
