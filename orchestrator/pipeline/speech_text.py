"""LLM text -> words a TTS should say.

Markdown markup, emoji and stage directions (``*laughs*``, ``(sighs)``, ``[pause]``) are
not meant to be read aloud. Text arrives in arbitrary token pieces, so the cleaner keeps
the unfinished tail and only releases whole words: a word is finished once whitespace
follows it (split words get mispronounced, as unmute notes).
"""

from __future__ import annotations

import re

_EMOJI = re.compile(
    "[\U0001f000-\U0001faff\U00002600-\U000027bf\U0001f900-\U0001f9ff\U00002300-\U000023ff\ufe0f\u200d]"
)
_BOLD = re.compile(r"(\*\*|__)(.+?)\1")
_STAGE = re.compile(r"\*[^*\n]{1,80}\*|\([^()\n]{1,60}\)|\[[^\[\]\n]{1,60}\]")
_MARKUP = re.compile(r"(^|\s)(#{1,6}|>|[-*+]|\d+\.)\s+|[*_`~]+|\]\([^)]*\)")


def clean_for_speech(text: str) -> str:
    """Remove what should not be spoken; keep words and their punctuation."""
    text = _EMOJI.sub("", text)
    text = _BOLD.sub(r"\2", text)  # **bold** is read; a single *...* is a stage direction
    text = _STAGE.sub(" ", text)
    text = _MARKUP.sub(lambda m: f"{m.group(1) or ''} ", text)
    return text.replace("[", "").replace("]", "")


class SpeechWords:
    """Feeds LLM deltas in, yields whole cleaned words out."""

    def __init__(self) -> None:
        self._pending = ""

    def feed(self, delta: str) -> list[str]:
        """Words completed by this delta."""
        self._pending += delta
        # Keep an unfinished word, and anything inside an unclosed stage direction.
        cut = max(self._pending.rfind(" "), self._pending.rfind("\n"))
        if cut < 0 or self._open_direction(self._pending[:cut]):
            return []
        ready, self._pending = self._pending[:cut], self._pending[cut:]
        return clean_for_speech(ready).split()

    def flush(self) -> list[str]:
        """The last words once the LLM is done."""
        ready, self._pending = self._pending, ""
        return clean_for_speech(ready).split()

    @staticmethod
    def _open_direction(text: str) -> bool:
        return (
            text.count("(") > text.count(")") or text.count("[") > text.count("]") or text.count("*") % 2 == 1
        )
