"""Word error rate with a compact text normalisation (no jiwer): what bench/stt_accuracy.py
scores with, and what the STT tests compare words by.

Normalising puts a reference and a transcript in the same spelling: lower case, no
punctuation, hyphens as spaces, numbers up to 999 in words ("10" and "ten" both read "ten"),
longer digit strings digit by digit ("29340": "two nine three four zero", as digits are read
out), and the abbreviations Whisper writes for spoken titles ("Mr." for "mister").
"""

from __future__ import annotations

import re

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
_ONES += "sixteen seventeen eighteen nineteen"
ONES = _ONES.split()
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
ABBREVIATIONS = {"mr": "mister", "mrs": "missus", "dr": "doctor", "st": "saint", "ok": "okay"}
_TOKEN = re.compile(r"[a-z0-9']+")


def number_words(n: int) -> str:
    """0-999 spelled out ("one hundred twenty three")."""
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else " " + ONES[n % 10])
    rest = n % 100
    return ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + number_words(rest))


def normalise(text: str) -> list[str]:
    """The words of `text` in one spelling, for comparing transcripts."""
    words: list[str] = []
    for found in _TOKEN.findall(text.lower().replace("-", " ")):
        token = found.strip("'")
        if token.isdigit() and len(token) <= 3:
            words.extend(number_words(int(token)).split())
        elif token.isdigit():
            words.extend(ONES[int(digit)] for digit in token)
        elif token:
            words.append(ABBREVIATIONS.get(token, token))
    return words


def edit_distance(reference: list[str], hypothesis: list[str]) -> int:
    """Word-level Levenshtein distance (substitutions, deletions, insertions)."""
    row = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        previous, row[0] = row[0], i
        for j, hyp in enumerate(hypothesis, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (ref != hyp))
    return row[-1]


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(errors, reference words) after normalising both; WER is their ratio over a corpus."""
    ref, hyp = normalise(reference), normalise(hypothesis)
    return edit_distance(ref, hyp), len(ref)
