"""bench/turns.py: its corpus, its configurations, and a short run against the lite stack
that must report every figure (not how fast: these are real-time runs on a shared machine)."""

from __future__ import annotations

import argparse
import itertools
import json

import pytest

from bench.turn_corpus import INTERJECTIONS, KINDS, MID_TURN_PAUSES, SHORT_COUNTS, CorpusMaker
from bench.turns import parse_config
from kit.audio import SAMPLE_RATE
from tests.bench.test_benchmarks_run import run_bench

pytestmark = pytest.mark.lite


def test_configurations_become_turn_detection_settings():
    assert parse_config("server_vad").turn_detection == {"type": "server_vad"}
    assert parse_config("semantic_vad:high/no-preempt").turn_detection == {
        "type": "semantic_vad",
        "eagerness": "high",
        "preemptive": False,
    }
    assert parse_config("server_vad:800/preempt").turn_detection == {
        "type": "server_vad",
        "silence_duration_ms": 800,
        "preemptive": True,
    }
    for bad in (
        "vad",
        "server_vad:high",
        "semantic_vad:eager",
        "server_vad/maybe",
        "server_vad:0",
        "semantic_vad:800",
    ):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_config(bad)


def test_short_corpus_has_every_kind_of_turn():
    turns = CorpusMaker(short=True).turns()
    assert {t.kind: sum(u.kind == t.kind for u in turns) for t in turns} == SHORT_COUNTS
    assert set(SHORT_COUNTS) == set(KINDS)
    for turn in turns:
        starts = [a for a, _ in turn.speech]
        assert turn.speech[0][0] == 0 and turn.end_of_speech == turn.audio.size
        assert starts == sorted(starts) and all(a < b for a, b in turn.speech)
        if turn.kind in MID_TURN_PAUSES:
            # The pauses inside the turn: each long enough to fool a silence timer.
            gaps = [(b - a) / SAMPLE_RATE for (_, a), (b, _) in itertools.pairwise(turn.speech)]
            assert gaps and all(gap >= 0.2 for gap in gaps) and sum(gaps) >= 0.5
        assert (turn.interjection is not None) == (turn.kind in INTERJECTIONS)


def test_short_run_against_the_lite_stack_reports_every_figure(lite_stack, tmp_path):
    lite_stack.script(reply="Sure, here is what I found for you.")
    out = tmp_path / "turns"
    # A quiet room: the lite STT's VAD takes noise for speech after its own flush (see
    # the report of this bench), which would leave no reply to interject over.
    result = run_bench(
        "bench/turns.py",
        *("--url", lite_stack.orchestrator.ws, "--token", lite_stack.token),
        *("--short", "--configs", "server_vad", "--snr-db", "50", "--out", str(out)),
    )
    report = json.loads((out / "turns.json").read_text())
    assert list(report["configs"]) == ["server_vad"]
    figures = report["configs"]["server_vad"]
    assert figures["errors"] == []
    assert figures["turns"] == sum(SHORT_COUNTS.values())
    for metric in ("voice_to_voice_ms", "server_voice_to_voice_ms"):
        assert figures[metric]["p50"] is not None and figures[metric]["p95"] is not None
    assert figures["false_cut_ins"]["of"] == sum(SHORT_COUNTS[k] for k in MID_TURN_PAUSES)
    # Every interjection was played over a reply being heard: each count has its turns.
    assert {kind: b["of"] for kind, b in figures["false_barge_ins"].items()} == {
        kind: SHORT_COUNTS[kind] for kind in INTERJECTIONS
    }
    assert len(figures["per_turn"]) == figures["turns"]
    assert "| server_vad | " in result.stdout
    assert (out / "turns.md").read_text().strip() == result.stdout.strip()
    assert (out / "turns.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
