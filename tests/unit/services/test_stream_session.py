"""The stream-session skeleton both model services share (services/common/stream_session.py),
through the STT app on a scripted engine: the paths no real client takes on purpose."""

from __future__ import annotations

import time

import msgpack
from starlette.testclient import TestClient

from services.stt.app import build_app
from services.stt.settings import SttSettings
from tests.unit.services.test_stt_faults import ScriptedEngine

KEY = "skeleton-test-key"


def _client(**overrides: object) -> TestClient:
    settings = SttSettings(_env_file=None, service_api_key=KEY, batch_size=1, **overrides)
    return TestClient(build_app(settings, engine_factory=lambda _: ScriptedEngine(batch_size=1)))


def _wait_ready(client: TestClient, free_slots: int) -> None:
    """Until /ready says the model is loaded and `free_slots` slots are free."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        answer = client.get("/ready")
        if answer.status_code == 200 and answer.json().get("free_slots") == free_slots:
            return
        time.sleep(0.02)
    raise AssertionError(f"/ready never said {free_slots} free slot(s): {answer.text}")


def test_an_idle_stream_gets_an_error_and_a_close_and_its_slot_back():
    with _client(idle_timeout_s=0.3) as client:
        _wait_ready(client, free_slots=1)
        with client.websocket_connect("/api/asr-streaming", headers={"kyutai-api-key": KEY}) as ws:
            assert msgpack.unpackb(ws.receive_bytes()) == {"type": "Ready"}
            error = msgpack.unpackb(ws.receive_bytes())
            assert error["type"] == "Error" and error["message"].startswith("no message for"), error
            assert ws.receive() == {"type": "websocket.close", "code": 1000, "reason": ""}
        _wait_ready(client, free_slots=1)
        metrics = client.get("/metrics").text
        assert 'stt_protocol_errors_total{reason="idle"}' in metrics


def test_a_full_service_refuses_with_no_free_channels_and_serves_the_next_stream():
    with _client() as client:
        _wait_ready(client, free_slots=1)
        headers = {"kyutai-api-key": KEY}
        with client.websocket_connect("/api/asr-streaming", headers=headers) as first:
            assert msgpack.unpackb(first.receive_bytes()) == {"type": "Ready"}
            with client.websocket_connect("/api/asr-streaming", headers=headers) as second:
                refusal = msgpack.unpackb(second.receive_bytes())
                assert refusal == {"type": "Error", "message": "no free channels"}
                assert second.receive()["type"] == "websocket.close"
        _wait_ready(client, free_slots=1)  # the first stream's client left: its slot is back
        with client.websocket_connect("/api/asr-streaming", headers=headers) as third:
            assert msgpack.unpackb(third.receive_bytes()) == {"type": "Ready"}
