"""Parallel sessions, access control, and malformed client input."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid

import httpx
import numpy as np
import pytest
import websockets

from devkit.realtime_client import RealtimeTestClient, append_event, speech

pytestmark = pytest.mark.lite


async def mark_session(client: RealtimeTestClient, instructions: str) -> None:
    """Give a session its own system prompt, by which its LLM requests are found."""
    await client.send(
        {"type": "session.update", "session": {"type": "realtime", "instructions": instructions}}
    )
    await client.wait_type("session.updated")


async def test_two_sessions_do_not_interfere(lite_stack):
    lite_stack.script(reply="Each of you gets an answer.")
    a = await RealtimeTestClient.connect(lite_stack.orchestrator.ws, lite_stack.token)
    b = await RealtimeTestClient.connect(lite_stack.orchestrator.ws, lite_stack.token)
    marks = {a: f"Session A {uuid.uuid4()}", b: f"Session B {uuid.uuid4()}"}
    try:
        for client, mark in marks.items():
            await mark_session(client, mark)
        silence = np.zeros(24000 * 2, np.float32)
        # A speaks; B stays silent: only A's session may transcribe and answer.
        await asyncio.gather(a.send_audio(speech(1.5)), b.send_audio(silence))
        done_a = await a.wait_type("response.done")
        await b.send_audio(speech(1.5))
        done_b = await b.wait_type("response.done")
    finally:
        await a.close()
        await b.close()
    assert done_a["response"]["id"] != done_b["response"]["id"]
    assert a.types().count("response.done") == 1 and b.types().count("response.done") == 1
    session_ids = {
        next(e for e in c.events if e["type"] == "session.created")["session"]["id"] for c in (a, b)
    }
    assert len(session_ids) == 2
    # Each session's one LLM request held its own single user turn: histories are per session.
    for client, mark in marks.items():
        heard = next(e for e in client.events if e["type"].endswith("transcription.completed"))["transcript"]
        (request,) = lite_stack.llm_requests_for(mark)
        assert request[1:] == [{"role": "user", "content": heard}]


async def test_history_grows_per_turn_within_a_session(lite_stack):
    lite_stack.script(reply="Noted.")
    mark = f"History {uuid.uuid4()}"
    client = await RealtimeTestClient.connect(lite_stack.orchestrator.ws, lite_stack.token)
    try:
        await mark_session(client, mark)
        for _ in range(2):
            start = len(client.events)
            await client.send_audio(speech(1.5))
            await client.wait_type("response.done", start)
    finally:
        await client.close()
    first, second = lite_stack.llm_requests_for(mark)
    assert [m["role"] for m in first] == ["system", "user"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]


async def test_access_token_is_required(lite_stack):
    orch = lite_stack.orchestrator
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        with pytest.raises(websockets.InvalidStatus) as info:
            async with websockets.connect(f"{orch.ws}/v1/realtime", additional_headers=headers):
                pass
        assert info.value.response.status_code == 401
    async with httpx.AsyncClient(base_url=orch.http) as client:
        page = await client.get("/")
        assert page.status_code == 401 and "Access token required" in page.text
        assert (await client.get("/health")).status_code == 200  # probes stay open
        first = await client.get(f"/?token={lite_stack.token}")
        # Relative, and no cookie Path: both stay right behind a proxy that strips a prefix.
        assert first.status_code == 303 and first.headers["location"] == "./"
        assert "httponly" in first.headers["set-cookie"].lower()
        assert "path=" not in first.headers["set-cookie"].lower()
        ui = await client.get("/")  # the cookie now stands for the token
        assert ui.status_code == 200 and "<title>" in ui.text
        assert (await client.get("/api/status")).json()["backends"]["llm"]["ready"] is True
    assert lite_stack.token not in orch.log_text()


BAD_EVENTS = [
    ("not json {", None, "invalid_json"),
    (json.dumps({"type": "transcription_session.update", "event_id": "e1"}), "e1", "unknown_event"),
    (json.dumps({"type": "conversation.item.create", "event_id": "e1b"}), "e1b", "invalid_value"),
    (
        json.dumps({"type": "input_audio_buffer.append", "audio": "***", "event_id": "e2"}),
        "e2",
        "invalid_audio",
    ),
    (
        json.dumps(
            {
                "type": "input_audio_buffer.append",
                "audio": base64.b64encode(b"abc").decode(),
                "event_id": "e3",
            }
        ),
        "e3",
        "invalid_audio",
    ),
    (
        json.dumps({"type": "input_audio_buffer.append", "audio": "A" * (1024 * 1024 + 4), "event_id": "e4"}),
        "e4",
        "audio_too_large",
    ),
    (
        json.dumps(
            {"type": "conversation.item.truncate", "item_id": "x", "audio_end_ms": -5, "event_id": "e5"}
        ),
        "e5",
        "invalid_value",
    ),
    (
        json.dumps(
            {
                "type": "session.update",
                "session": {"audio": {"input": {"turn_detection": {"threshold": 7}}}},
                "event_id": "e6",
            }
        ),
        "e6",
        "invalid_value",
    ),
    (json.dumps([1, 2]), None, "invalid_event"),
    (np.array([0.1, np.nan], "<f4").tobytes(), None, "invalid_audio"),
    (b"\x00\x00\x80", None, "invalid_audio"),
]


async def test_each_bad_event_gets_an_error_and_the_session_goes_on(lite_stack):
    client = await RealtimeTestClient.connect(lite_stack.orchestrator.ws, lite_stack.token)
    try:
        await client.wait_type("session.created")
        for payload, event_id, code in BAD_EVENTS:
            start = len(client.events)
            await client.send(payload)
            error = await client.wait_type("error", start, wait_s=10)
            assert error["error"]["code"] == code, (payload[:60], error)
            assert error["error"]["event_id"] == event_id
        # Still alive: a manual turn goes through.
        await client.send(
            {"type": "session.update", "session": {"audio": {"input": {"turn_detection": None}}}}
        )
        await client.send(append_event(speech(0.3)))
        await client.send({"type": "input_audio_buffer.commit"})
        assert (await client.wait_type("conversation.item.input_audio_transcription.completed"))["transcript"]
    finally:
        await client.close()


async def test_audio_faster_than_ten_times_real_time_is_slowed_down(lite_stack):
    client = await RealtimeTestClient.connect(lite_stack.orchestrator.ws, lite_stack.token)
    try:
        second = np.zeros(24000, np.float32)
        for _ in range(12):  # 12 s of audio at once: past the 5 s burst at 10x
            await client.send(append_event(second))
        error = await client.wait_type("error", wait_s=10)
        assert error["error"]["code"] == "rate_limited" and "nothing is dropped" in error["error"]["message"]
    finally:
        await client.close()


async def test_sessions_beyond_the_cap_are_refused_clearly(whisper_stt, piper_tts, api_key, tmp_path_factory):
    from tests.conftest import start_llm, start_orchestrator

    token = "cap-test-token"
    with (
        start_llm(api_key, tmp_path_factory.mktemp("llm")) as llm,
        start_orchestrator(
            whisper_stt, piper_tts, llm, token, tmp_path_factory.mktemp("orch"), ORCHESTRATOR_MAX_SESSIONS="1"
        ) as orch,
    ):
        first = await RealtimeTestClient.connect(orch.ws, token)
        try:
            await first.wait_type("session.created")
            second = await RealtimeTestClient.connect(orch.ws, token)
            busy = await second.wait_type("error")
            assert (
                busy["error"]["code"] == "server_busy" and "1 sessions are in use" in busy["error"]["message"]
            )
            await asyncio.wait_for(second.ws.wait_closed(), 5)
            assert second.ws.close_code == 1013
        finally:
            await first.close()
        # The slot is back once the first session has ended (its backend streams closed).
        async with httpx.AsyncClient(base_url=orch.http) as http:
            for _ in range(100):
                if re.search(r"^orchestrator_sessions 0\.0$", (await http.get("/metrics")).text, re.M):
                    break
                await asyncio.sleep(0.05)
        third = await RealtimeTestClient.connect(orch.ws, token)
        try:
            assert (await third.wait_type("session.created"))["session"]["id"]
        finally:
            await third.close()
