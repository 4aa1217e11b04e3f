"""The benchmarks are not timed in tests, but each must run and produce its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.lite
def test_loadtest_writes_table_and_plot(lite_stack, tmp_path):
    lite_stack.script(reply="Fine, thanks.")
    out = tmp_path / "results"
    result = subprocess.run(
        [
            sys.executable,
            "bench/loadtest.py",
            "--url",
            lite_stack.orchestrator.ws,
            "--token",
            lite_stack.token,
            "--sessions",
            "1",
            "--turns",
            "1",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    table = (out / "loadtest.md").read_text()
    assert "| 1 | voice to voice |" in table and "| 1 | errors / sessions completed | 0 |" in table
    assert (out / "loadtest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.moshi
def test_stt_and_tts_benchmarks_run_on_the_tiny_models():
    for script, args in (
        ("bench/stt_batching.py", ["--batch", "1", "2", "--steps", "3", "--warmup", "1"]),
        ("bench/tts_latency.py", ["--batch", "1", "--repeat", "1"]),
    ):
        result = subprocess.run(
            [sys.executable, script, *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert "|---:|" in result.stdout or "|---|" in result.stdout
