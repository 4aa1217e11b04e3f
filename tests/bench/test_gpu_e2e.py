"""bench/gpu_e2e.sh: the whole stack under load, run here as its `--tiny` CPU check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu_e2e.sh"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_gpu_e2e_script_is_shellcheck_clean():
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "shellcheck"), "--external-sources", str(SCRIPT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.moshi
@pytest.mark.timeout(600)
def test_tiny_run_reports_every_stage_and_stops_every_process(tmp_path):
    out = tmp_path / "e2e"
    result = subprocess.run(
        [str(SCRIPT), "run", str(out), "--tiny"],
        cwd=ROOT,
        env=os.environ | {"PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]

    data = json.loads((out / "gpu_e2e.json").read_text())
    assert data["config"]["tiny"] is True
    assert [level["users"] for level in data["levels"]] == [1, 4]
    for level in data["levels"]:
        assert level["sessions_ok"] == level["users"]
        metrics = level["metrics"]
        # Client-side figures and the orchestrator's own stages, each with p50 and p95.
        for key in (
            "voice_to_voice",
            "transcript",
            "llm_first_token",
            "tts_first_audio",
            "server_voice_to_voice",
        ):
            assert metrics[key]["n"] >= 1, key
            assert 0 < metrics[key]["p50"] <= metrics[key]["p95"], key
        assert level["services"]["stt_steps"] > 0 and level["services"]["tts_steps"] > 0
    assert data["llm"]["completed"] >= sum(lv["metrics"]["voice_to_voice"]["n"] for lv in data["levels"])
    assert not any(_alive(p["pid"]) for p in data["processes"].values())

    report = (out / "gpu_e2e.md").read_text()
    assert (
        "| users | sessions completed | errors | turns answered | voice to voice p50 (ms) | p95 (ms) |"
        in report
    )
    assert "| 4 | 4/4 |" in report
    assert "| server: end of speech → transcript |" in report
    assert (out / "logs" / "stt" / "stt.log").stat().st_size > 0


def test_a_service_that_dies_is_named_with_its_log(tmp_path):
    from bench.e2e_stack import Stack
    from devkit.processes import ServiceError

    stack = Stack(tmp_path, "key", {})
    try:
        stack.start("stt", ["-c", "import sys; print('model file is corrupt'); sys.exit(3)"])
        with pytest.raises(ServiceError) as failure:
            stack.wait_ready(["stt"], timeout_s=60)
    finally:
        stack.stop()
    message = str(failure.value)
    assert message.startswith("stt exited with status 3")
    assert "model file is corrupt" in message and "stt.log" in message
