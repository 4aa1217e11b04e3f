"""slurm/placement.py, run as the SLURM job runs it: the default plans for 1, 2, 4 and 8 GPUs,
the overrides, and the plans that cannot fit (exit 2 with the reason, nothing started)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLACEMENT = ROOT / "slurm/placement.py"
OVERRIDES = ("STT_GPUS", "TTS_GPUS", "LLM_GPUS", "LLM_TENSOR_PARALLEL_SIZE", "LLM_GPU_MEMORY_UTILIZATION")


def placement(gpus: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in OVERRIDES}
    return subprocess.run(
        [sys.executable, str(PLACEMENT), "--gpus", gpus, "--format", "rows", *args],
        capture_output=True,
        text=True,
        env={**clean, **env},
        check=False,
    )


def plan(gpus: str, *args: str, **env: str) -> dict[str, tuple[str, str]]:
    """instance -> (CUDA_VISIBLE_DEVICES, memory)."""
    result = placement(gpus, *args, **env)
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    return {name: (devices, memory) for name, _service, devices, memory in rows}


def devices(gpus: str, *args: str, **env: str) -> dict[str, str]:
    return {name: dev for name, (dev, _memory) in plan(gpus, *args, **env).items()}


@pytest.mark.parametrize(
    ("gpus", "expected"),
    [
        ("0", {"stt": "0", "tts": "0", "llm": "0"}),
        ("0,1", {"stt": "0", "tts": "0", "llm": "1"}),
        ("0,1,2,3", {"stt": "0", "tts": "1", "tts2": "2", "llm": "3"}),
        (
            "0,1,2,3,4,5,6,7",
            {
                "stt": "0",
                "tts": "1",
                "tts2": "2",
                "tts3": "3",
                "tts4": "4",
                "tts5": "5",
                "tts6": "6",
                "llm": "7",
            },
        ),
    ],
)
def test_default_plans_use_every_gpu(gpus: str, expected: dict[str, str]) -> None:
    assert devices(gpus) == expected


def test_the_plan_maps_positions_to_the_ids_slurm_gave() -> None:
    # A job that got GPUs 4-7 of a shared node: position 0 is GPU 4.
    assert devices("4,5,6,7") == {"stt": "4", "tts": "5", "tts2": "6", "llm": "7"}


def test_vllm_takes_what_stt_and_tts_leave_on_a_shared_gpu_and_090_of_its_own() -> None:
    assert plan("0")["llm"][1] == "auto"
    assert plan("0,1")["llm"][1] == "0.90"
    assert plan("0,1", LLM_GPU_MEMORY_UTILIZATION="0.8")["llm"][1] == "0.8"


def test_tensor_parallel_takes_the_last_gpus() -> None:
    assert devices("0,1,2,3,4,5,6,7", LLM_TENSOR_PARALLEL_SIZE="2")["llm"] == "6,7"
    assert devices("0,1,2,3", LLM_TENSOR_PARALLEL_SIZE="2") == {"stt": "0", "tts": "1", "llm": "2,3"}
    assert devices("0,1,2,3", LLM_GPUS="0,1", STT_GPUS="2", TTS_GPUS="3") == {
        "stt": "2",
        "tts": "3",
        "llm": "0,1",
    }


def test_an_external_llm_leaves_every_gpu_to_stt_and_tts() -> None:
    assert devices("0,1,2,3", "--external-llm") == {"stt": "0", "tts": "1", "tts2": "2", "tts3": "3"}
    assert devices("", "--external-llm") == {"stt": "-", "tts": "-"}


@pytest.mark.parametrize(
    ("gpus", "env", "reason"),
    [
        (
            "0,1",
            {"LLM_TENSOR_PARALLEL_SIZE": "4"},
            "LLM_TENSOR_PARALLEL_SIZE=4 needs 4 GPUs, but the job has 2",
        ),
        ("0,1,2,3", {"LLM_TENSOR_PARALLEL_SIZE": "3"}, "must be a power of two"),
        ("0,1", {"TTS_GPUS": "1,2"}, "TTS_GPUS=1,2 names GPU 2, but the job has 2 GPU(s)"),
        ("0,1,2,3", {"LLM_GPUS": "2,3", "LLM_TENSOR_PARALLEL_SIZE": "4"}, "LLM_GPUS lists 2 GPU(s)"),
        ("0,1", {"STT_GPUS": "one"}, "STT_GPUS=one: expected GPU positions"),
        ("", {}, "vLLM needs a GPU and this job has none"),
    ],
)
def test_a_plan_that_cannot_fit_exits_2_with_the_reason(gpus: str, env: dict[str, str], reason: str) -> None:
    result = placement(gpus, **env)
    assert result.returncode == 2
    assert result.stdout == ""
    assert reason in result.stderr and result.stderr.startswith("placement: ")


def test_the_jobs_vllm_command_passes_what_the_image_runs() -> None:
    """The command line the job prints is the one apptainer/vllm.def's %startscript runs."""
    startscript = (ROOT / "apptainer/vllm.def").read_text().split("%startscript")[1].split("%runscript")[0]
    printed = (ROOT / "slurm/lib/node.sh").read_text().split("vllm_command() {")[1].split("\n}")[0]
    flags = set(re.findall(r"--[a-z-]+", startscript))
    assert flags == set(re.findall(r"--[a-z-]+", printed))
    assert "--tensor-parallel-size" in flags
