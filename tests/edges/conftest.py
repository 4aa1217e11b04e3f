"""The three services, each in its own process, with connection timeouts short enough to
watch them fire: a request head within 1 s, no body pause over 1 s, keep-alive 1 s, and a
WebSocket ping every second that must be answered within 2 s."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from devkit.processes import ServiceProcess
from tests.conftest import lite_service, start_llm, start_orchestrator

SHORT_TIMEOUTS = {
    "HTTP_HEADER_TIMEOUT_S": "1",
    "HTTP_BODY_TIMEOUT_S": "1",
    "HTTP_KEEPALIVE_TIMEOUT_S": "1",
    "WS_PING_INTERVAL_S": "1",
    "WS_PING_TIMEOUT_S": "2",
}


@dataclass
class Edge:
    """One service as a client meets it: its streaming endpoint, the headers that pass its auth,
    its HTTP routes, and the gauge of its open streams."""

    name: str
    service: ServiceProcess
    ws_path: str
    auth: dict[str, str]
    routes: list[str]
    open_streams: str

    @property
    def port(self) -> int:
        return self.service.port


@pytest.fixture(scope="package")
def edges(api_key: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Edge]]:
    """STT, TTS and the orchestrator (in front of them and the scripted LLM), by name."""
    token = secrets.token_urlsafe(16)
    key = {"kyutai-api-key": api_key}
    with (
        lite_service("services.stt", "whisper", api_key, tmp_path_factory, env=SHORT_TIMEOUTS) as stt,
        lite_service("services.tts", "piper", api_key, tmp_path_factory, env=SHORT_TIMEOUTS) as tts,
        start_llm(api_key, tmp_path_factory.mktemp("llm")) as llm,
        start_orchestrator(stt, tts, llm, token, tmp_path_factory.mktemp("orch"), **SHORT_TIMEOUTS) as orch,
    ):
        common = ["/health", "/ready", "/metrics", "/api/build_info", "/nowhere"]
        yield {
            "stt": Edge(
                "stt", stt, "/api/asr-streaming", key, [*common, "/v1/transcribe"], "asr_open_channels"
            ),
            "tts": Edge(
                "tts",
                tts,
                "/api/tts_streaming",
                key,
                [*common, "/v1/voices", "/synthesize"],
                "py_open_channels",
            ),
            "orchestrator": Edge(
                "orchestrator",
                orch,
                "/v1/realtime",
                {"Authorization": f"Bearer {token}"},
                [*common, "/", "/api/status", "/api/voices", "/static/app.js", "/v1/realtime"],
                "orchestrator_sessions",
            ),
        }
