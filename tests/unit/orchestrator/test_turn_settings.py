"""`session.update` of turn detection: bad values get an error naming the field, and the
session keeps its previous settings (the app in-process; no backend needs to answer)."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from orchestrator.app import build_app
from orchestrator.settings import OrchestratorSettings

SETTINGS = OrchestratorSettings(
    _env_file=None,  # type: ignore[call-arg]
    service_api_key="key",
    stt_url="ws://127.0.0.1:9",  # nothing listens: the session reports the STT as down
    tts_url="ws://127.0.0.1:9",
    llm_url="echo",
)


def update(ws, turn_detection: object | None = None) -> dict:
    """Send an update (of turn detection, or of nothing); the first answer that is not
    about the STT being down."""
    session = {} if turn_detection is None else {"audio": {"input": {"turn_detection": turn_detection}}}
    ws.send_text(json.dumps({"type": "session.update", "event_id": "upd", "session": session}))
    while True:
        event = ws.receive_json()
        if event["type"] != "error" or event["error"]["event_id"] == "upd":
            return event


@pytest.mark.parametrize(
    ("turn_detection", "field"),
    [
        ({"type": "magic_vad"}, "type"),
        ({"type": "semantic_vad", "eagerness": "extreme"}, "eagerness"),
        ({"type": "server_vad", "silence_duration_ms": -5}, "silence_duration_ms"),
        ({"type": "server_vad", "idle_timeout_ms": -1000}, "idle_timeout_ms"),
        ({"type": "server_vad", "interrupt_speech_ms": -1}, "interrupt_speech_ms"),
        ({"type": "semantic_vad", "preemptive": "sometimes"}, "preemptive"),
    ],
)
def test_a_bad_turn_detection_value_is_named_and_changes_nothing(turn_detection: dict, field: str):
    with TestClient(build_app(SETTINGS)) as http, http.websocket_connect("/v1/realtime") as ws:
        before = ws.receive_json()["session"]["audio"]["input"]["turn_detection"]
        error = update(ws, turn_detection)
        assert error["type"] == "error" and error["error"]["code"] == "invalid_value"
        assert error["error"]["param"].endswith(f"turn_detection.{field}")
        assert update(ws)["session"]["audio"]["input"]["turn_detection"] == before  # kept as it was
        good = update(ws, {"type": "semantic_vad", "eagerness": "low", "preemptive": True})
        assert good["type"] == "session.updated"
        after = good["session"]["audio"]["input"]["turn_detection"]
        assert after["eagerness"] == "low" and after["preemptive"] is True
        assert after["create_response"] == before["create_response"]


def test_server_vad_waits_800_ms_unless_the_client_says_otherwise():
    """800 ms, not OpenAI's 500 (docs/performance.md, Turn-taking); a client's own value wins."""
    with TestClient(build_app(SETTINGS)) as http, http.websocket_connect("/v1/realtime") as ws:
        created = ws.receive_json()["session"]["audio"]["input"]["turn_detection"]
        assert (created["type"], created["silence_duration_ms"]) == ("server_vad", 800)
        kept = update(ws, {"type": "server_vad"})["session"]["audio"]["input"]["turn_detection"]
        assert kept["silence_duration_ms"] == 800
        openai = update(ws, {"type": "server_vad", "silence_duration_ms": 500})
        assert openai["session"]["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 500
