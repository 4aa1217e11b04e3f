"""Where the phrase-at-a-time engines cut a stream's words: Piper's short first clause and
sentence-long later phrases, espeak-ng's short phrases throughout."""

from __future__ import annotations

import pytest

from services.tts.engines.phrasing import PhrasePolicy
from services.tts.text import Word, split_words

pytestmark = pytest.mark.lite
pytest.importorskip("piper")

from services.tts.engines.espeak_engine import ESPEAK_PHRASES as ESPEAK  # noqa: E402
from services.tts.engines.piper_engine import PIPER_PHRASES as PIPER  # noqa: E402


def cut(policy: PhrasePolicy, text: str, first: bool, eos: bool = False) -> list[str]:
    words = split_words(text)
    return [w.text for w in words[: policy.next_phrase(words, first, eos)]]


@pytest.mark.parametrize(
    ("text", "eos", "phrase"),
    [
        ("Sure, I can help", False, ["Sure,"]),  # the first clause, however short
        ("The weather in Paris is nice.", False, ["The", "weather", "in", "Paris"]),  # or a few words
        ("The weather", False, []),  # incomplete: wait for more
        ("The weather", True, ["The", "weather"]),  # unless the text has ended
    ],
)
def test_piper_first_phrase_is_a_short_clause(text, eos, phrase):
    assert cut(PIPER, text, first=True, eos=eos) == phrase


TWELVE = "one two three four five six seven eight nine ten eleven twelve"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("and then, of course, we go. Next", 6),  # to the sentence end
        ("and then, of course, we go", 0),  # a comma does not end it
        (TWELVE.replace("five", "five,"), 5),  # at the word limit: after its last clause
        (TWELVE, 10),  # or at the limit
    ],
)
def test_piper_later_phrases_run_to_the_sentence_end(text, words):
    assert cut(PIPER, text, first=False) == text.split()[:words]


def test_character_limit_and_breaks():
    long_word = "x" * 300
    assert cut(PIPER, f"{long_word} and more.", first=False) == [long_word]  # a long word goes alone
    words = [Word("hello"), Word("", 1.0), Word("there.")]
    assert PIPER.next_phrase(words, first=True, eos=False) == 1  # a pause ends the phrase before it
    assert PIPER.next_phrase(words[1:], first=True, eos=False) == 1  # and is a phrase of its own


def test_espeak_phrases_end_at_any_clause_past_the_first_word():
    assert cut(ESPEAK, "Hi, there, you", first=True) == ["Hi,", "there,"]
    assert cut(ESPEAK, "one two three four five six seven eight nine", first=False) == [
        "one", "two", "three", "four", "five", "six", "seven", "eight",
    ]  # fmt: skip
