"""Where the next phrase of a stream ends, for the engines that speak a phrase at a time.

Such an engine (espeak-ng, Piper) synthesises a whole phrase per call, so a stream's words
wait until a phrase is complete: its end punctuation arrived, it reached the policy's word
or character limit, or the text ended (`Eos`). A stream's first phrase may follow tighter
rules than the later ones, so its first audio waits for a short clause, not a sentence,
while later phrases are longer (more context gives better prosody).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.tts.text import Word

#: Punctuation that ends a clause; a phrase cut at its length limit ends after the last one.
CLAUSE_END = (".", "!", "?", ";", ":", ",")
SENTENCE_END = (".", "!", "?", ";", ":")


@dataclass(frozen=True)
class PhrasePolicy:
    """How an engine cuts a stream's words into phrases."""

    #: Most words in a stream's first phrase (its first audio waits for no more).
    first_words: int
    #: Most words in any later phrase.
    words: int
    #: Most characters in a phrase, counted past its first word (a long word still goes alone).
    chars: int
    #: Punctuation that ends the first phrase, and the later ones.
    first_ends: tuple[str, ...] = CLAUSE_END
    ends: tuple[str, ...] = CLAUSE_END
    #: A phrase ends at its punctuation only once it has this many words.
    min_words: int = 1

    def next_phrase(self, words: Sequence[Word], first: bool, eos: bool) -> int:
        """How many of `words` make the next phrase, or 0 while it is incomplete.

        A `<break>` pause is a phrase of its own and ends the one before it. A phrase that
        reaches its word or character limit before its end punctuation ends after its last
        clause punctuation if it has one (a cut between clauses sounds least broken).
        """
        limit = self.first_words if first else self.words
        ends = self.first_ends if first else self.ends
        chars = 0
        last_clause = 0
        for i, word in enumerate(words[:limit]):
            if not word.text:
                return i or 1
            chars += len(word.text) + 1
            if i > 0 and chars > self.chars:
                return last_clause or i
            if i + 1 >= self.min_words:
                if word.text.endswith(ends):
                    return i + 1
                if word.text.endswith(CLAUSE_END):
                    last_clause = i + 1
        if len(words) >= limit:
            return last_clause or limit
        return len(words) if eos else 0
