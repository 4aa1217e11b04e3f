"""Fresh CPU-engine services per fuzz module, so the log, slot and memory checks see only fuzz traffic."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devkit.processes import ServiceProcess
from tests.conftest import Stack, lite_service, orchestrated


@pytest.fixture(scope="module")
def stt(api_key: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """Whisper STT (the CPU default), 4 slots."""
    with lite_service("services.stt", "whisper", api_key, tmp_path_factory) as proc:
        yield proc


@pytest.fixture(scope="module")
def tts(api_key: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """Piper TTS (the CPU default), 4 slots."""
    with lite_service("services.tts", "piper", api_key, tmp_path_factory) as proc:
        yield proc


@pytest.fixture(scope="module")
def stack(stt, tts, api_key: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The orchestrator in front of this module's own STT and TTS and the scripted LLM."""
    with orchestrated(stt, tts, api_key, tmp_path_factory) as built:
        yield built
