"""Sessions that come and go at any moment, even while their STT or TTS stream is still
connecting, hand every backend slot back at once: none is left to the idle timeout (~120 s)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import secrets
import threading
from collections.abc import Iterator
from http import HTTPStatus

import httpx
import msgpack
import pytest
import websockets
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from devkit.processes import start_service
from devkit.realtime_client import RealtimeTestClient, append_event, speech
from tests.conftest import Stack, lite_service, start_llm, start_orchestrator

pytestmark = pytest.mark.lite

CLIENTS = 10
ROUNDS = 12
RELEASE_S = 10.0  # far below the STT's idle timeout: a leaked slot cannot pass for a slow release


@pytest.fixture(scope="module")
def own_stt_stack(piper_tts, api_key, tmp_path_factory) -> Iterator[Stack]:
    """An orchestrator in front of an STT of its own, whose channel count nobody else touches."""
    token = secrets.token_urlsafe(16)
    with (
        lite_service("services.stt", "whisper", api_key, tmp_path_factory) as stt,
        start_llm(api_key, tmp_path_factory.mktemp("llm")) as llm,
        start_orchestrator(stt, piper_tts, llm, token, tmp_path_factory.mktemp("orch")) as orch,
    ):
        yield Stack(stt, piper_tts, llm, orch, token)


def metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    return float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))


async def short_session(stack: Stack, rng: random.Random) -> None:
    """Connect, speak at once, and leave after a random moment (often mid STT connect)."""
    headers = {"Authorization": f"Bearer {stack.token}"}
    url = f"{stack.orchestrator.ws}/v1/realtime"
    if rng.random() < 0.2:  # give up during the Realtime handshake itself
        with contextlib.suppress(TimeoutError, OSError, websockets.WebSocketException):
            ws = await asyncio.wait_for(
                websockets.connect(url, additional_headers=headers), rng.random() / 50
            )
            await ws.close()
        return
    async with websockets.connect(url, additional_headers=headers) as ws:
        # Audio sent before the STT stream is up is held and sent once it connects: more
        # awaits between the connect and the stream being owned by the session.
        await ws.send(append_event(speech()[:12000]))
        await asyncio.sleep(rng.choice([0.0, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.2]))
        if rng.random() < 0.3:
            ws.transport.abort()  # gone without a close frame


async def test_session_churn_leaves_no_stt_slot_behind(own_stt_stack):
    stack = own_stt_stack
    rng = random.Random(13)
    for _ in range(ROUNDS):
        await asyncio.gather(*(short_session(stack, rng) for _ in range(CLIENTS)), return_exceptions=True)
    for _ in range(int(RELEASE_S / 0.2)):
        if (
            metric(stack.stt.http, "asr_open_channels") == 0
            and metric(stack.orchestrator.http, "orchestrator_sessions") == 0
        ):
            break
        await asyncio.sleep(0.2)
    assert metric(stack.stt.http, "asr_open_channels") == 0, "STT slots still held after the sessions closed"
    assert metric(stack.orchestrator.http, "orchestrator_sessions") == 0
    # And a new session is served: its turn is transcribed (no stt_at_capacity).
    client = await RealtimeTestClient.connect(stack.orchestrator.ws, stack.token)
    try:
        await client.send(
            {"type": "session.update", "session": {"audio": {"input": {"turn_detection": None}}}}
        )
        await client.send(append_event(speech(0.3)))
        await client.send({"type": "input_audio_buffer.commit"})
        done = await client.wait_type("conversation.item.input_audio_transcription.completed", wait_s=30)
    finally:
        await client.close()
    errors = [e["error"]["code"] for e in client.events if e["type"] == "error"]
    assert done["transcript"] and not errors, errors


class SlowBackend:
    """A moshi-server stand-in (STT and TTS paths) that answers `Ready` only after `ready_after_s`,
    and counts the streams still open on it. It runs on its own thread: the orchestrator's
    readiness probe reaches it while the test's loop is blocked starting processes."""

    def __init__(self, ready_after_s: float) -> None:
        self.ready_after_s = ready_after_s
        self.open: dict[str, int] = {"/api/asr-streaming": 0, "/api/tts_streaming": 0}
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> SlowBackend:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _serve(self) -> Server:
        return await serve(self._stream, "127.0.0.1", 0, process_request=self._probe)

    def _probe(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path == "/ready":
            return connection.respond(HTTPStatus.OK, "ready\n")
        return None

    async def _stream(self, ws: ServerConnection) -> None:
        path = ws.request.path.split("?")[0]
        self.open[path] += 1
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ws.wait_closed(), self.ready_after_s)
            with contextlib.suppress(websockets.ConnectionClosed):
                await ws.send(msgpack.packb({"type": "Ready"}))
                await ws.wait_closed()
        finally:
            self.open[path] -= 1


async def test_streams_cancelled_while_connecting_are_closed(api_key, tmp_path_factory):
    """Deterministic: every session leaves while its STT and TTS streams still wait for `Ready`
    (the stand-in never sends it; the orchestrator's own connect timeout must close them too)."""
    token = secrets.token_urlsafe(16)
    with (
        SlowBackend(ready_after_s=60.0) as backend,
        start_llm(api_key, tmp_path_factory.mktemp("llm")) as llm,
    ):
        env = {"STT_PORT": str(backend.port), "TTS_PORT": str(backend.port), "ACCESS_TOKEN": token}
        env["LLM_URL"] = f"{llm.http}/v1"
        with start_service("orchestrator", [], api_key, tmp_path_factory.mktemp("orch"), env=env) as orch:
            clients = [await RealtimeTestClient.connect(orch.ws, token) for _ in range(4)]
            for client in clients:
                manual = {"audio": {"input": {"turn_detection": None}}}
                await client.send({"type": "session.update", "session": manual})
                await client.send({"type": "response.create"})  # its TTS stream starts connecting
            for _ in range(50):
                if min(backend.open.values()) >= len(clients):
                    break
                await asyncio.sleep(0.02)
            assert backend.open["/api/tts_streaming"] > 0, backend.open
            for client in clients:
                await client.close()
            for _ in range(150):
                if not any(backend.open.values()):
                    break
                await asyncio.sleep(0.02)
            assert backend.open == {"/api/asr-streaming": 0, "/api/tts_streaming": 0}
