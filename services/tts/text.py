"""Splitting streamed text into words, as moshi-server's TTS does before tokenising.

Each `Text` message is processed on its own (words never join across messages):
``’`` becomes ``'``, ``–``, ``(`` and ``)`` are removed, ``:`` becomes a space, and
``<break time="Xs"/>`` tags become pauses. What is left is split on whitespace, with
case and punctuation kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BREAK = re.compile(r"<break\s+time=\"([0-9]+(?:\.[0-9]*)?)s\"\s*/?>")
MAX_BREAK_S = 10.0


@dataclass(frozen=True)
class Word:
    """A word to speak, or a pause of `pause_s` seconds when `text` is empty."""

    text: str
    pause_s: float = 0.0


def clean(text: str) -> str:
    """moshi-server's character replacements."""
    return text.replace("’", "'").replace("–", "").replace("(", "").replace(")", "").replace(":", " ")


def split_words(text: str) -> list[Word]:
    """Words and pauses of one `Text` message, in order."""
    words: list[Word] = []
    position = 0
    for match in _BREAK.finditer(text):
        words.extend(Word(w) for w in clean(text[position : match.start()]).split())
        words.append(Word("", min(float(match.group(1)), MAX_BREAK_S)))
        position = match.end()
    words.extend(Word(w) for w in clean(text[position:]).split())
    return words
