"""Malformed client input never ends a Realtime connection, and a fault of ours closes it
properly (1011 after a `server_error` event), never with a bare 1006."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from devkit.realtime_client import RealtimeTestClient
from orchestrator.app import build_app
from orchestrator.pipeline.session import VoiceSession
from orchestrator.settings import OrchestratorSettings


def session_update(session: object, event_id: str) -> str:
    return json.dumps({"type": "session.update", "session": session, "event_id": event_id})


def response_create(response: object) -> str:
    return json.dumps({"type": "response.create", "response": response})


NAN_THRESHOLD = '{"type":"session.update","session":{"audio":{"input":{"turn_detection":{"threshold":NaN}}}}}'
INFINITE = session_update({"audio": {"input": {"turn_detection": {"silence_duration_ms": 1e400}}}}, "inf")
# (frame, the error code it must get): each of the first six used to end the connection with 1006.
HOSTILE = [
    ('{"type":[1]}', "unknown_event"),
    ('{"type":{}}', "unknown_event"),
    ("[" * 50_000 + "]" * 50_000, "invalid_json"),
    ('{"type":"session.update","session":{"max_output_tokens":' + "9" * 5000 + "}}", "invalid_json"),
    (session_update({"audio": {"output": "x"}}, "out-x"), "invalid_value"),
    (session_update({"audio": {"input": 5}}, "in-5"), "invalid_value"),
    (NAN_THRESHOLD, "invalid_json"),
    (INFINITE, "invalid_json"),
    (session_update({"max_output_tokens": 10**40}, "huge"), "invalid_value"),
    (json.dumps({"type": "response.cancel", "event_id": {"a": 1}}), "invalid_value"),
    (response_create({"metadata": {str(i): "v" for i in range(17)}}), "invalid_value"),
    (response_create({"audio": {"output": {"voice": 7}}}), "invalid_value"),
    ('"\\ud800"', "invalid_json"),
    # Lone surrogates (JSON's \u escapes can write them; no UTF-8 can carry them) in each kind
    # of text a client sends: instructions, an event id, a conversation item's text.
    (session_update({"instructions": "Be \ud800 brief."}, "instructions"), "invalid_json"),
    (json.dumps({"type": "input_audio_buffer.clear", "event_id": "id-\udc00"}), "invalid_json"),
    (
        json.dumps(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "\ud83d"}],
                },
            }
        ),
        "invalid_json",
    ),
]
# An event over the frame limit (ORCHESTRATOR_MAX_APPEND_BYTES plus 64 KiB) is refused by the
# transport with 1009, which ends the connection: tests/edges/test_connection_edges.py.


@pytest.mark.lite
async def test_hostile_frames_get_an_error_and_the_connection_goes_on(lite_stack):
    log_start = len(lite_stack.orchestrator.log_text())
    client = await RealtimeTestClient.connect(lite_stack.orchestrator.ws, lite_stack.token)
    try:
        await client.wait_type("session.created")
        for frame, code in HOSTILE:
            start = len(client.events)
            await client.send(frame)
            error = await client.wait_type("error", start, wait_s=10)
            assert error["error"]["code"] == code, (frame[:80], error)
            event_id = json.loads(frame).get("event_id") if code == "invalid_value" else None
            if isinstance(event_id, str):
                assert error["error"]["event_id"] == event_id
        # Still alive, and nothing of the above changed the session.
        await client.send({"type": "session.update", "session": {"instructions": "Still here."}})
        updated = await client.wait_type("session.updated")
        assert updated["session"]["instructions"] == "Still here."
        assert updated["session"]["audio"]["output"]["voice"] != 7
        assert client.ws.close_code is None
    finally:
        await client.close()
    log = lite_stack.orchestrator.log_text()[log_start:]
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-3000:]


def test_a_fault_of_ours_is_reported_and_closes_with_1011(monkeypatch, caplog):
    """An unexpected exception while handling an event: an error event, a 1011 close, a log entry."""

    def broken_clear(self: VoiceSession) -> None:
        raise RuntimeError("injected fault")

    monkeypatch.setattr(VoiceSession, "clear", broken_clear)
    settings = OrchestratorSettings(
        _env_file=None,  # type: ignore[call-arg]
        service_api_key="key",
        stt_url="ws://127.0.0.1:9",  # nothing listens: the session reports the STT as down
        tts_url="ws://127.0.0.1:9",
        llm_url="echo",
    )
    caplog.set_level(logging.ERROR, logger="orchestrator.realtime.connection")
    with TestClient(build_app(settings)) as http, http.websocket_connect("/v1/realtime") as ws:
        assert ws.receive_json()["type"] == "session.created"
        ws.send_text(json.dumps({"type": "input_audio_buffer.clear"}))
        events = []
        with pytest.raises(WebSocketDisconnect) as closed:
            while True:
                events.append(ws.receive_json())
    assert closed.value.code == 1011
    errors = [e["error"] for e in events if e["type"] == "error" and e["error"]["code"] == "server_error"]
    assert errors and "RuntimeError" in errors[0]["message"], events
    assert any(r.exc_info and "injected fault" in str(r.exc_info[1]) for r in caplog.records)


@pytest.mark.lite
async def test_an_event_flood_is_closed_with_1008(lite_stack):
    """A flood of response.create used to start a reply (an LLM request and a TTS stream)
    per event and left the orchestrator unresponsive for minutes; now a second
    response.create while one is active is refused, as OpenAI does, and a flood past
    ORCHESTRATOR_MAX_EVENTS_PER_SECOND ends with an error and a 1008 close."""
    lite_stack.script(reply="A reply long enough to still be running. " * 5, token_delay_s=0.05)
    client = await RealtimeTestClient.connect(lite_stack.orchestrator.ws, lite_stack.token)
    try:
        await client.wait_type("session.created")
        for n in range(400):
            await client.send({"type": "response.create", "event_id": f"create-{n}"})
        await asyncio.wait_for(client.ws.wait_closed(), 30)
    finally:
        await client.close()
        lite_stack.script()  # the scripted LLM's defaults, for the tests after this one
    errors = [e["error"] for e in client.events if e["type"] == "error"]
    assert [e["code"] for e in errors][-1] == "rate_limit_exceeded"
    busy = [e for e in errors if e["code"] == "conversation_already_has_active_response"]
    assert busy and busy[0]["event_id"] == "create-1"
    assert client.types().count("response.created") == 1
    assert client.ws.close_code == 1008
    # The server stays responsive for everyone else.
    other = await RealtimeTestClient.connect(lite_stack.orchestrator.ws, lite_stack.token)
    try:
        await other.wait_type("session.created", wait_s=5)
    finally:
        await other.close()
