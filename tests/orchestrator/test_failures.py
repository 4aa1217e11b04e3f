"""Backends failing mid-session: an `error` event says so, the session stays open, and
the next turn works once the backend is back."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from devkit.processes import Restartable
from devkit.realtime_client import RealtimeTestClient, append_event, speech
from tests.conftest import Stack, start_orchestrator

pytestmark = pytest.mark.lite

STT_ARGS = ("services.stt", ["--engine", "whisper", "--batch-size", "2"])
TTS_ARGS = ("services.tts", ["--engine", "piper", "--batch-size", "2"])
LLM_ARGS = ("devkit.llm_server", [])


@pytest.fixture(scope="module")
def fragile(api_key, tmp_path_factory) -> Iterator[tuple[Stack, dict[str, Restartable]]]:
    services = {
        name: Restartable(args, api_key, tmp_path_factory.mktemp(name))
        for name, args in (("stt", STT_ARGS), ("tts", TTS_ARGS), ("llm", LLM_ARGS))
    }
    token = secrets.token_urlsafe(16)
    try:
        procs = {name: s.proc for name, s in services.items()}
        workdir = tmp_path_factory.mktemp("orch")
        # A short LLM timeout, so the slow-LLM test does not wait 15 s.
        with start_orchestrator(*procs.values(), token, workdir, ORCHESTRATOR_LLM_TIMEOUT_S="2") as orch:
            yield Stack(procs["stt"], procs["tts"], procs["llm"], orch, token), services
    finally:
        for service in services.values():
            service.close()


async def manual_turn(client: RealtimeTestClient) -> dict:
    """Speak, commit, ask for a response; return the response.done event of this turn."""
    start = len(client.events)
    await client.send(append_event(speech(0.5)))
    await client.send({"type": "input_audio_buffer.commit"})
    await client.send({"type": "response.create"})
    return await client.wait_type("response.done", start, wait_s=60)


async def wait_error(client: RealtimeTestClient, code: str, start: int) -> dict:
    """The error event with this code (others, e.g. rate_limited from fast test appends, are skipped)."""
    return await client.wait_for(
        lambda e: e["type"] == "error" and e["error"]["code"] == code, start, wait_s=5
    )


async def manual_session(stack: Stack) -> RealtimeTestClient:
    client = await RealtimeTestClient.connect(stack.orchestrator.ws, stack.token)
    await client.send({"type": "session.update", "session": {"audio": {"input": {"turn_detection": None}}}})
    await client.wait_type("session.updated")
    return client


@pytest.mark.parametrize("backend", ["llm", "tts"])
async def test_response_backend_killed_then_back(fragile, backend):
    stack, services = fragile
    client = await manual_session(stack)
    try:
        assert (await manual_turn(client))["response"]["status"] == "completed"
        services[backend].kill()
        start = len(client.events)
        failed = await manual_turn(client)
        error = await wait_error(client, f"{backend}_unavailable", start)
        assert failed["response"]["status"] == "failed"
        assert backend.upper() in error["error"]["message"]
        services[backend].restart()
        if backend == "llm":
            stack.script(reply="Back again.")
        assert (await manual_turn(client))["response"]["status"] == "completed"
    finally:
        await client.close()


async def test_llm_erroring_is_reported(fragile):
    stack, _ = fragile
    client = await manual_session(stack)
    try:
        stack.script(fail_status=500)
        start = len(client.events)
        failed = await manual_turn(client)
        error = await wait_error(client, "llm_backend_error", start)
        assert failed["response"]["status"] == "failed" and "HTTP 500" in error["error"]["message"]
        stack.script(reply="Fine now.")
        assert (await manual_turn(client))["response"]["status"] == "completed"
    finally:
        await client.close()


async def test_stt_killed_then_back(fragile):
    stack, services = fragile
    client = await manual_session(stack)
    try:
        assert (await manual_turn(client))["response"]["status"] == "completed"
        start = len(client.events)
        services["stt"].kill()
        error = await client.wait_type("error", start, wait_s=5)
        assert (
            error["error"]["code"] == "stt_unavailable"
            and "speech recognition is paused" in error["error"]["message"]
        )
        services["stt"].restart()
        # The session reconnects on its own (backoff up to 8 s); then turns work again.
        for _ in range(20):
            done = await manual_turn(client)
            transcript = [e for e in client.events if e["type"].endswith("transcription.completed")][-1][
                "transcript"
            ]
            if transcript:
                break
        assert done["response"]["status"] == "completed" and transcript
    finally:
        await client.close()


async def test_slow_llm_times_out_with_an_error(fragile):
    stack, _ = fragile
    client = await manual_session(stack)
    try:
        stack.script(reply="Too late.", first_token_delay_s=4)  # the orchestrator waits 2 s here
        start = len(client.events)
        failed = await manual_turn(client)
        error = await wait_error(client, "llm_timeout", start)
        assert failed["response"]["status"] == "failed" and "2 s" in error["error"]["message"]
        stack.script(reply="On time.")
        assert (await manual_turn(client))["response"]["status"] == "completed"
    finally:
        await client.close()


async def test_tts_at_capacity_is_reported(fragile):
    from tests.tts_client import connect as tts_connect

    stack, services = fragile
    client = await manual_session(stack)
    tts = services["tts"].proc
    holders = [await tts_connect(tts.ws, tts.api_key).__aenter__() for _ in range(2)]  # its 2 slots
    try:
        start = len(client.events)
        failed = await manual_turn(client)
        error = await wait_error(client, "tts_at_capacity", start)
        assert failed["response"]["status"] == "failed" and "no free channels" in error["error"]["message"]
    finally:
        for ws in holders:
            await ws.close()
    try:
        assert (await manual_turn(client))["response"]["status"] == "completed"
    finally:
        await client.close()
