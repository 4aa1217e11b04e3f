"""The vLLM command the SLURM job prints (slurm/plan.py's vllm_command, as DRY_RUN and the
placement plan print it) with the tool-call flags of services/llm/tool-flags.sh: on for the
default Gemma 3 model with its template, off on request, and another model's parser with its
own template."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.unit.slurm.slurm_scripts import ROOT, load

job = load("job")
plan = load("plan")
# One LLM instance on GPUs 2 and 3 of the node.
LLM = plan.Placed(plan.Instance("llm", "llm", (2, 3), "0.90"), "2,3", 3002)
BASE = (
    "CUDA_VISIBLE_DEVICES=2,3 vllm serve {model} --host 127.0.0.1 --port 3002 --tensor-parallel-size 2 "
    "--gpu-memory-utilization 0.90 --max-model-len 8192 --limit-mm-per-prompt '{{\"image\": 0}}'"
)
GEMMA_TOOLS = (
    " --enable-auto-tool-choice --tool-call-parser pythonic"
    " --chat-template /opt/unmute/llm/gemma3-tools.jinja"
)


def printed(tmp_path: Path, **settings: str) -> str:
    """The command the job prints with these .env settings."""
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LLM_")}
    return plan.vllm_command(LLM, job.Settings(env_file, clean), "127.0.0.1", ROOT, clean)


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, BASE.format(model="google/gemma-3-12b-it") + GEMMA_TOOLS),
        ({"LLM_MODEL": "google/gemma-3-27b-it"}, BASE.format(model="google/gemma-3-27b-it") + GEMMA_TOOLS),
        ({"LLM_TOOL_CALL_PARSER": "off"}, BASE.format(model="google/gemma-3-12b-it")),
        ({"LLM_MODEL": "Qwen/Qwen3-8B"}, BASE.format(model="Qwen/Qwen3-8B")),
        (
            {"LLM_MODEL": "Qwen/Qwen3-8B", "LLM_TOOL_CALL_PARSER": "hermes"},
            BASE.format(model="Qwen/Qwen3-8B") + " --enable-auto-tool-choice --tool-call-parser hermes",
        ),
        (
            {"LLM_MODEL": "m/x", "LLM_TOOL_CALL_PARSER": "llama3_json", "LLM_CHAT_TEMPLATE": "/t/x.jinja"},
            BASE.format(model="m/x") + " --enable-auto-tool-choice --tool-call-parser llama3_json"
            " --chat-template /t/x.jinja",
        ),
    ],
    ids=["default", "gemma-3-27b", "off", "other-model", "other-parser", "own-template"],
)
def test_the_job_prints_the_tool_call_flags(tmp_path: Path, settings: dict[str, str], expected: str) -> None:
    assert printed(tmp_path, **settings) == expected


def test_the_image_and_compose_start_vllm_with_the_same_flags() -> None:
    """All three run services/llm/tool-flags.sh, and ship the directory where it looks for templates."""
    definition = (ROOT / "apptainer/vllm.def").read_text()
    startscript = definition.split("%startscript")[1].split("%runscript")[0]
    assert "$(bash /opt/unmute/llm/tool-flags.sh)" in startscript
    assert "services/llm /opt/unmute/llm" in definition.split("%files")[1].split("%")[0]
    compose = (ROOT / "compose.yaml").read_text()
    assert (
        "$$(bash /opt/unmute/llm/tool-flags.sh)" in compose and "./services/llm:/opt/unmute/llm:ro" in compose
    )


def test_the_printed_command_passes_what_the_image_runs(tmp_path: Path) -> None:
    """The flags of the command line the job prints are those apptainer/vllm.def's %startscript
    passes (the tool-call flags aside: both take them from tool-flags.sh)."""
    startscript = (ROOT / "apptainer/vllm.def").read_text().split("%startscript")[1].split("%runscript")[0]
    flags = set(re.findall(r"--[a-z-]+", startscript))
    assert flags == set(re.findall(r"--[a-z-]+", printed(tmp_path, LLM_TOOL_CALL_PARSER="off")))
    assert "--tensor-parallel-size" in flags
