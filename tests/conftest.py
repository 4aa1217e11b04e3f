"""Shared fixtures: tiny checkpoints and real service processes on free loopback ports."""

from __future__ import annotations

import os

# Set before anything imports torch/moshi/huggingface_hub: compiling on CPU costs
# seconds per model, and a missing cache file must fail at once, not retry a network.
os.environ.setdefault("NO_TORCH_COMPILE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import contextlib
import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from devkit.processes import ServiceProcess, start_service


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--deployment-env",
        default=None,
        help="env file (.env, or a SLURM job's job.env) of a running deployment for tests/deployment",
    )
    parser.addoption(
        "--deployment-ca",
        default=None,
        help="the deployment's orchestrator serves HTTPS/WSS with a certificate this PEM file trusts "
        "(a SLURM job's tls/cert.pem, or your TLS_DIR/cert.pem)",
    )


DEPLOYMENT_SUITE = Path(__file__).parent / "deployment"
# Suites that need what only root installs and starts (`make test` does, as CI): Docker,
# SLURM and Apptainer, Debian's chromium, nginx and ruby. `make check` leaves them out.
ROOT_SUITES = tuple(Path(__file__).parent / name for name in ("browser", "containers", "ood", "slurm"))


# A test phase (setup, call, teardown) slower than this gets a timestamped line as it ends.
SLOW_TEST_S = 20.0
# How much of a failure's traceback the inline report shows (the summary at the end has it all).
MAX_INLINE_FAILURE_LINES = 30


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Say at once, with the clock time, when a test fails or is slow: pytest's own summary comes
    only at the end, and a run stopped by CI's time limit never prints it."""
    slow = report.duration >= SLOW_TEST_S  # a setup phase may build images or start stacks
    if not (report.failed or slow):
        return
    clock = time.strftime("%H:%M:%S")
    line = f"\n[{clock}] {report.outcome} {report.when} {report.nodeid} ({report.duration:.0f} s)"
    if report.failed:
        text = str(report.longrepr).rstrip().splitlines()
        line += "\n" + "\n".join(f"    {row}" for row in text[-MAX_INLINE_FAILURE_LINES:])
    print(line, file=sys.__stderr__, flush=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the root-only suites `root`. Leave out the deployment suite unless a deployment is
    named: it tests services someone started (`make integration`, or the compose and SLURM
    tests, which run it in a pytest of its own against what they start), so in a plain run it
    is not run rather than skipped."""
    for item in items:
        if any(item.path.is_relative_to(suite) for suite in ROOT_SUITES):
            item.add_marker(pytest.mark.root)
    if config.getoption("deployment_env") is not None:
        return
    left_out = [item for item in items if item.path.is_relative_to(DEPLOYMENT_SUITE)]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if not item.path.is_relative_to(DEPLOYMENT_SUITE)]


@pytest.fixture(scope="session")
def api_key() -> str:
    return secrets.token_urlsafe(24)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    """Tiny checkpoints as local directories plus an HF cache (``HF_HOME``) holding them."""
    from devkit.checkpoints import build_tiny_checkpoints

    root = tmp_path_factory.mktemp("tiny")
    return build_tiny_checkpoints(root / "models", hf_home=root / "hf")


def moshi_stt_service(tiny, api_key: str, workdir: Path, batch_size: int):
    """Start the STT service on the tiny model with end-of-turn heads."""
    args = ["--engine", "moshi", "--model", str(tiny.stt_dir), "--batch-size", str(batch_size)]
    return start_service("services.stt", args, api_key, workdir)


@pytest.fixture(scope="session")
def moshi_stt(tiny, api_key: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """The STT service on the tiny model with end-of-turn heads, 8 slots."""
    with moshi_stt_service(tiny, api_key, tmp_path_factory.mktemp("stt-moshi"), 8) as proc:
        yield proc


def lite_service(
    module: str,
    engine: str,
    api_key: str,
    factory: pytest.TempPathFactory,
    *,
    env: dict[str, str] | None = None,
    slots: int = 4,
):
    """A service on its CPU engine (whisper, piper, espeak) with `slots` slots, with `env` added
    to its environment."""
    args = ["--engine", engine, "--batch-size", str(slots)]
    return start_service(module, args, api_key, factory.mktemp(engine), env=env)


@pytest.fixture(scope="session")
def whisper_stt(api_key: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """The STT service on the whisper engine (bundled tiny.en, Silero VAD), 8 slots as in the demo:
    every test stack of the session shares it, one slot per open conversation."""
    with lite_service("services.stt", "whisper", api_key, tmp_path_factory, slots=8) as proc:
        yield proc


@pytest.fixture(scope="session")
def moshi_tts(tiny, api_key: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """The TTS service on the tiny model, greedy, 4 slots, with the tiny voice repo."""
    args = [
        "--engine", "moshi", "--model", str(tiny.tts_dir), "--voice-repo", str(tiny.voices_dir),
        "--voice", "tiny/default.wav", "--batch-size", "4", "--temperature", "0",
    ]  # fmt: skip
    with start_service("services.tts", args, api_key, tmp_path_factory.mktemp("tts-moshi")) as proc:
        yield proc


@pytest.fixture(scope="session")
def espeak_tts(api_key: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """The TTS service on the espeak-ng lite engine, 4 slots."""
    with lite_service("services.tts", "espeak", api_key, tmp_path_factory) as proc:
        yield proc


@pytest.fixture(scope="session")
def piper_tts(api_key: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """The TTS service on the Piper engine (the CPU default) with its bundled voice, 8 slots as in
    the demo: a barge-in's new reply can open its stream before the cut one has closed."""
    with lite_service("services.tts", "piper", api_key, tmp_path_factory, slots=8) as proc:
        yield proc


@dataclass
class Stack:
    """STT, TTS, scripted LLM and the orchestrator in front of them."""

    stt: ServiceProcess
    tts: ServiceProcess
    llm: ServiceProcess
    orchestrator: ServiceProcess
    token: str

    def script(self, **behaviour: object) -> None:
        """Tell the scripted LLM what to do next (see devkit/llm_server.py)."""
        httpx.post(f"{self.llm.http}/control", json=behaviour).raise_for_status()

    def llm_requests(self) -> list:
        return httpx.get(f"{self.llm.http}/requests").json()

    def llm_requests_for(self, instructions: str) -> list:
        """The LLM requests of the session(s) whose instructions (system prompt) are these: other
        sessions on this shared stack, or one a test left talking, cannot be mistaken for them."""
        return [m for m in self.llm_requests() if m[0] == {"role": "system", "content": instructions}]

    def llm_tools_for(self, instructions: str) -> list:
        """The tools and tool_choice each LLM request of the session(s) with these instructions
        offered, in order (as `llm_requests_for`, so no other session's request is counted)."""
        offered = httpx.get(f"{self.llm.http}/tools").json()
        return [o for o in offered if o["system"] == instructions]

    def llm_stats(self) -> dict:
        return httpx.get(f"{self.llm.http}/stats").json()


def start_llm(api_key: str, workdir: Path):
    return start_service("devkit.llm_server", [], api_key, workdir)


def start_orchestrator(
    stt: ServiceProcess, tts: ServiceProcess, llm: ServiceProcess, token: str, workdir: Path, **extra_env: str
):
    env = {
        "STT_PORT": str(stt.port),
        "TTS_PORT": str(tts.port),
        "LLM_URL": f"{llm.http}/v1",
        "ACCESS_TOKEN": token,
        **extra_env,
    }
    return start_service("orchestrator", [], stt.api_key, workdir, env=env)


@contextlib.contextmanager
def orchestrated(stt, tts, api_key, factory):
    token = secrets.token_urlsafe(16)
    with (
        start_llm(api_key, factory.mktemp("llm")) as llm,
        start_orchestrator(stt, tts, llm, token, factory.mktemp("orchestrator")) as orch,
    ):
        yield Stack(stt, tts, llm, orch, token)


@pytest.fixture(scope="session")
def lite_stack(whisper_stt, piper_tts, api_key, tmp_path_factory) -> Iterator[Stack]:
    """The CPU profile's engines behind the orchestrator, with the scripted LLM."""
    with orchestrated(whisper_stt, piper_tts, api_key, tmp_path_factory) as stack:
        yield stack


@pytest.fixture(scope="session")
def moshi_stack(moshi_stt, moshi_tts, api_key, tmp_path_factory) -> Iterator[Stack]:
    """The tiny moshi STT and TTS behind the orchestrator, with the scripted LLM."""
    with orchestrated(moshi_stt, moshi_tts, api_key, tmp_path_factory) as stack:
        yield stack
