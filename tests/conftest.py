"""Shared fixtures: tiny checkpoints and real service processes on free loopback ports."""

from __future__ import annotations

import os

# Set before anything imports torch/moshi/huggingface_hub: compiling on CPU costs
# seconds per model, and a missing cache file must fail at once, not retry a network.
os.environ.setdefault("NO_TORCH_COMPILE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import ServiceProcess, start_service

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def api_key() -> str:
    return secrets.token_urlsafe(24)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    """Tiny checkpoints as local directories plus an HF cache (``HF_HOME``) holding them."""
    pytest.importorskip("moshi")
    from services.common.tiny_checkpoints import build_tiny_checkpoints

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


@pytest.fixture(scope="session")
def sphinx_stt(api_key: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """The STT service on the pocketsphinx lite engine, 4 slots."""
    pytest.importorskip("pocketsphinx")
    with start_service(
        "services.stt",
        ["--engine", "sphinx", "--batch-size", "4"],
        api_key,
        tmp_path_factory.mktemp("stt-sphinx"),
    ) as proc:
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
    pytest.importorskip("espeakng_loader")
    with start_service(
        "services.tts",
        ["--engine", "espeak", "--batch-size", "4"],
        api_key,
        tmp_path_factory.mktemp("tts-espeak"),
    ) as proc:
        yield proc
