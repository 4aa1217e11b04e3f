"""The benchmarks are not timed in tests, but each must run and produce its table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_bench(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a benchmark script from the repository root as a user would; fail with its stderr."""
    result = subprocess.run(
        [sys.executable, script, *args], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.lite
def test_loadtest_writes_table_and_plot(lite_stack, tmp_path):
    lite_stack.script(reply="Fine, thanks.")
    out = tmp_path / "results"
    run_bench(
        "bench/loadtest.py",
        *("--url", lite_stack.orchestrator.ws, "--token", lite_stack.token),
        *("--sessions", "1", "--turns", "1", "--out", str(out)),
    )
    table = (out / "loadtest.md").read_text()
    assert "| 1 | voice to voice |" in table and "| 1 | errors / sessions completed | 0 |" in table
    assert (out / "loadtest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.moshi
def test_stt_and_tts_benchmarks_run_on_the_tiny_models():
    for script, args in (
        ("bench/stt_batching.py", ["--batch", "1", "2", "--steps", "3", "--warmup", "1"]),
        ("bench/tts_latency.py", ["--batch", "1", "--repeat", "1"]),
    ):
        result = run_bench(script, *args)
        assert "|---:|" in result.stdout or "|---|" in result.stdout


@pytest.mark.moshi
def test_gpu_capacity_runs_the_service_engines_on_tiny_configs(tmp_path):
    """`--tiny` is the CPU check of bench/gpu_capacity.py; the GPU run uses the same code."""
    out = tmp_path / "capacity.json"
    args = ["--tiny", "--stt-batch", "1", "2", "--tts-batch", "1", "2", "--steps", "3", "--contention-s", "1"]
    args.append("--keep-going")  # a busy CI machine can be 4x past real time at batch 1
    # An unlimited catch-up budget makes the step counts exact whatever the machine's speed.
    args += ["--first-audio-trials", "1", "--tts-catchup-ms", "10000"]
    run_bench("bench/gpu_capacity.py", *args, "--out", str(out))
    data = json.loads(out.read_text())
    stt = data["stt"]["tiny-stt"]
    assert [row["batch"] for row in stt] == [1, 2]
    assert all(row["gpu_median_ms"] is None for row in stt)  # GPU-busy time needs CUDA
    tts = data["tts"]["tiny-tts"]
    assert [row["batch"] for row in tts] == [1, 2]
    # The tiny TTS's delay (4 steps) plus its largest codebook delay (2): audio on a stream's
    # 7th step in lockstep; catch-up runs its first step's 3 other delay steps text-only: 4th.
    assert all(row["first_audio_steps"] == 4 and row["median_ms"] > 0 for row in tts)
    for row in tts:
        under_load = row["under_load"]
        assert (under_load["off"]["steps"], under_load["on"]["steps"]) == (7, 4)
        assert under_load["on"]["p95_ms"] >= under_load["on"]["p50_ms"] > 0
        # Every slot speaks in the breakdown pass, so each part of a full step ran.
        assert set(row["parts_ms"]) == {"main transformer", "depformer", "Mimi decode", "rest", "step"}
        assert all(row["parts_ms"][part] > 0 for part in ("main transformer", "depformer", "Mimi decode"))
    assert set(data["contention"]) == {"stt", "tts"}
    assert all(c["slowdown"] > 0 for c in data["contention"].values())
    markdown = out.with_suffix(".md").read_text()
    assert all(title in markdown for title in ("## tiny-stt", "First audio under load", "Where a step goes"))


@pytest.mark.moshi
def test_gpu_busy_time_counts_overlapping_gpu_work_once():
    from bench.gpu_capacity import busy_seconds

    spans = [(30.0, 40.0), (0.0, 10.0), (5.0, 20.0), (32.0, 35.0)]  # µs, in no particular order
    assert busy_seconds(spans) == pytest.approx(30e-6)
    assert busy_seconds([]) == 0


@pytest.mark.moshi
def test_published_architectures_build_with_the_stated_parameter_counts():
    """bench/architectures.json is what the GPU numbers rest on: each config must build with
    moshi's own loader (on the meta device: no memory) and have the parameters it states."""
    import copy

    import torch
    from moshi.models import loaders

    from devkit.checkpoints import lm_kwargs

    published = json.loads((ROOT / "bench/architectures.json").read_text())["models"]
    for name, entry in published.items():
        config = lm_kwargs(copy.deepcopy(entry["config"]))
        lm = loaders.get_moshi_lm(None, lm_kwargs=config, device="meta", dtype=torch.bfloat16)
        assert sum(p.numel() for p in lm.parameters()) == entry["parameters"], name


def test_capacity_plan_is_the_documented_table(tmp_path):
    """docs/performance.md's capacity tables are this script's output from the measured H200 run."""
    out = tmp_path / "capacity_plan.md"
    printed = run_bench("bench/capacity_plan.py", "--out", str(out)).stdout
    assert out.read_text() in printed
    documented = (ROOT / "docs/performance.md").read_text()
    rows = [line for line in out.read_text().splitlines() if line.startswith("|")]
    assert len(rows) == 2 + 4 + 2 + 4
    missing = [row for row in rows if row not in documented]
    assert not missing, f"docs/performance.md's capacity tables differ from bench/capacity_plan.py: {missing}"
