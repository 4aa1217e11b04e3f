"""Faults found from outside at the connection edge (issue 23), tried on all three services
over real sockets. Each test failed on the code before its fix:

- a header value that is not UTF-8 got a 500 and a traceback from the orchestrator, before
  authentication, on plain HTTP and on the WebSocket upgrade (and so did a cookie named
  ``a<b``); the STT and TTS let such headers through;
- a text frame that is not UTF-8 was closed with 1007 but logged as an ERROR with a
  traceback (two when the client's close came in the same packet);
- a silent connection, half a request head, or one sent a byte at a time, was never closed;
  nor a WebSocket whose client vanished, within the configured ping timeout;
- a WebSocket message past the endpoint's limit was read whole, up to 16 MiB, before the
  endpoint refused it; refused at the frame header, its close frame could be lost to a reset;
- a request body that stalled was waited for forever, and a client that left halfway through
  one logged a traceback.
"""

from __future__ import annotations

import asyncio
import json

import msgpack
import pytest
import websockets
from websockets.frames import Close, Opcode

from kit.settings import ServiceSettings
from orchestrator.realtime.client_events import MAX_EVENT_OVERHEAD_CHARS
from orchestrator.settings import OrchestratorSettings
from tests.edges.conftest import Edge
from tests.fuzz.harness import LogWatch, settle
from tests.raw_client import (
    RawConnection,
    RawWebSocket,
    client_frame,
    exchange,
    http_request,
    upgrade_request,
)

pytestmark = pytest.mark.lite

SERVICES = ["stt", "tts", "orchestrator"]
# A stray byte, latin-1 "café", a broken two-byte sequence, a surrogate written as UTF-8 bytes.
NOT_UTF8 = [b"\xff", b"caf\xe9", b"\xc3\x28", b"\xed\xa0\x80"]
WAIT_S = 10.0  # far past every timeout the services here are given (1-3 s)


@pytest.mark.parametrize("name", SERVICES)
async def test_a_header_that_is_not_utf8_gets_400_on_every_route_and_upgrade(edges, name):
    edge: Edge = edges[name]
    log = LogWatch(edge.service)
    requests = [
        http_request(method, route, {**auth, "X-Note": value, "Connection": "close"})
        for value in NOT_UTF8
        for route in edge.routes
        for method in ("GET", "POST")
        for auth in ({}, edge.auth)
    ] + [upgrade_request(edge.ws_path, {**edge.auth, "X-Note": value}) for value in NOT_UTF8]
    answers = await asyncio.gather(*(exchange(edge.port, request) for request in requests))
    for request, answer in zip(requests, answers, strict=True):
        assert answer.status == 400, (request, answer.data[:300])
        assert answer.body == b"request header 'x-note' is not valid UTF-8\n", answer.body
    # UTF-8 beyond ASCII is a header value like any other.
    fine = await exchange(edge.port, http_request("GET", "/health", {"X-Note": "café ☕".encode()}), 2)
    assert fine.status == 200, fine.data[:300]
    assert log.problems() == []


async def test_a_cookie_the_standard_library_calls_illegal_does_not_fail_the_token_check(edges):
    edge: Edge = edges["orchestrator"]
    token = edge.auth["Authorization"].removeprefix("Bearer ")
    log = LogWatch(edge.service)
    stray = await exchange(edge.port, http_request("GET", "/api/status", {"Cookie": "a<b=1"}), 2)
    beside = f"a<b=1; unmute_token={token}"
    with_token = await exchange(edge.port, http_request("GET", "/api/status", {"Cookie": beside}), 2)
    assert (stray.status, with_token.status) == (401, 200)
    assert log.problems() == []


@pytest.mark.parametrize("name", SERVICES)
@pytest.mark.parametrize("with_close", [False, True], ids=["alone", "with-the-clients-close"])
async def test_a_text_frame_that_is_not_utf8_closes_1007_and_logs_one_line(edges, name, with_close):
    edge: Edge = edges[name]
    log = LogWatch(edge.service)
    ws = await RawWebSocket.open(edge.port, edge.ws_path, edge.auth)
    try:
        frames = client_frame(Opcode.TEXT, b'{"type": "caf\xe9"}')
        if with_close:
            frames += client_frame(Opcode.CLOSE, Close(1000, "").serialize())
        await ws.send_raw(frames)
        closing = await ws.closing(WAIT_S)
    finally:
        ws.close()
    assert closing.tcp_closed and closing.close is not None
    # With the client's close already in, the server answers that close instead.
    assert closing.close.code == (1000 if with_close else 1007), closing.close
    assert log.problems() == []
    lines = [line for line in log.text().splitlines() if "not valid UTF-8" in line]
    assert len(lines) == 1 and '"level": "WARNING"' in lines[0], lines


async def _after_a_response(port: int, then: bytes) -> bytes:
    conn = await RawConnection.open(port)
    try:
        await conn.send(http_request("GET", "/health", {}))
        first = await conn.reader.readuntil(b"}")  # the end of /health's JSON
        await conn.send(then)
        rest = await conn.answer(WAIT_S)
        assert rest.closed, "the connection stayed open"
        return first + rest.data
    finally:
        conn.close()


async def _opened_with(port: int, partial: bytes) -> RawConnection:
    conn = await RawConnection.open(port)
    await conn.send(partial)
    return conn


@pytest.mark.parametrize("name", SERVICES)
async def test_silent_and_half_sent_requests_are_timed_out(edges, name):
    """Each connection here is closed by its service's 1 s header deadline (or the 1 s
    keep-alive), well within WAIT_S; before the fix, none was ever closed."""
    edge: Edge = edges[name]
    head = http_request("GET", "/health", {})
    upgrade = upgrade_request(edge.ws_path, edge.auth)
    silent, half_head, half_upgrade = [
        await _opened_with(edge.port, partial) for partial in (b"", head[:20], upgrade[: len(upgrade) // 2])
    ]
    trickler = await RawConnection.open(edge.port)
    try:
        answers = await asyncio.gather(
            silent.answer(WAIT_S),
            half_head.answer(WAIT_S),
            half_upgrade.answer(WAIT_S),
            trickler.trickle(head, every_s=0.25),
            _after_a_response(edge.port, b""),
            _after_a_response(edge.port, b"GET /hea"),
        )
    finally:
        for conn in (silent, half_head, half_upgrade, trickler):
            conn.close()
    silence, half, half_up, trickled, idle_after, half_after = answers
    assert silence.closed and silence.data == b""  # nothing begun: closed as an idle keep-alive is
    assert half.closed and half.status == 408, half.data
    assert half_up.closed and half_up.status == 408, half_up.data
    assert trickled < len(head), "a head sent a byte every 0.25 s was read to its end"
    assert idle_after.count(b"HTTP/1.1 ") == 1  # the /health answer, then the close
    assert half_after.count(b"HTTP/1.1 ") == 2 and b"HTTP/1.1 408 Request Timeout" in half_after


@pytest.mark.parametrize("name", SERVICES)
async def test_a_websocket_whose_client_went_silent_is_closed_and_its_stream_freed(edges, name):
    """A client that vanished without a close (a half-open connection) answers no ping: the
    service closes it (1011) once WS_PING_TIMEOUT_S passes, and its slot or session ends."""
    edge: Edge = edges[name]
    ws = await RawWebSocket.open(edge.port, edge.ws_path, edge.auth)
    try:
        closing = await ws.closing(WAIT_S)
    finally:
        ws.close()
    assert any(frame.opcode is Opcode.PING for frame in closing.frames)
    assert closing.tcp_closed and closing.close is not None and closing.close.code == 1011, closing.close
    assert settle([(edge.service, edge.open_streams)]) == []


LIMITS = {
    "stt": ServiceSettings.model_fields["max_message_bytes"].default,
    "tts": ServiceSettings.model_fields["max_message_bytes"].default,
    "orchestrator": OrchestratorSettings.model_fields["max_append_bytes"].default + MAX_EVENT_OVERHEAD_CHARS,
}


def _is_error(name: str, raw: str | bytes) -> bool:
    if name == "orchestrator":
        return json.loads(raw)["type"] == "error"
    return msgpack.unpackb(raw)["type"] == "Error"


@pytest.mark.parametrize("name", SERVICES)
async def test_a_message_over_the_endpoint_limit_is_refused_with_1009_before_it_is_read(edges, name):
    edge: Edge = edges[name]
    limit = LIMITS[name]
    log = LogWatch(edge.service)
    async with websockets.connect(
        f"{edge.service.ws}{edge.ws_path}", additional_headers=edge.auth, max_size=None
    ) as ws:
        await ws.recv()  # Ready, or session.created
        # At the limit: read, and answered by the endpoint (these bytes mean nothing to it).
        await ws.send(b"\0" * limit)
        while not _is_error(name, await asyncio.wait_for(ws.recv(), WAIT_S)):
            pass
        # One byte more: refused as its frame header arrives, saying why (the server may close
        # before the client has written it all).
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.send(b"\0" * (limit + 1))
            while True:
                await asyncio.wait_for(ws.recv(), WAIT_S)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009, closed.value
    assert f"exceeds limit of {limit} bytes" in closed.value.rcvd.reason
    assert log.problems() == []
    assert settle([(edge.service, edge.open_streams)]) == []


@pytest.mark.parametrize("name", SERVICES)
async def test_a_refused_message_is_answered_with_a_close_frame_and_fin_never_a_reset(edges, name):
    """The server fails the connection as the frame header arrives, with most of the message
    still on its way: it must read and drop the rest, or its kernel answers that data with a
    reset, which can destroy the close frame before the client reads it."""
    edge: Edge = edges[name]
    ws = await RawWebSocket.open(edge.port, edge.ws_path, edge.auth)
    try:
        await ws.send_raw(client_frame(Opcode.BINARY, b"\0" * (LIMITS[name] + 1)), then_eof=True)
        closing = await ws.closing(WAIT_S)
    finally:
        ws.close()
    assert closing.close is not None and closing.close.code == 1009, closing.close
    assert closing.tcp_closed and not closing.reset


BODY_ROUTES = {"stt": "/v1/transcribe", "tts": "/synthesize"}


@pytest.mark.parametrize("name", ["stt", "tts"])
async def test_a_stalled_body_gets_408_and_a_client_that_leaves_mid_body_logs_nothing(edges, name):
    edge: Edge = edges[name]
    log = LogWatch(edge.service)
    headers = {**edge.auth, "Content-Type": "application/json", "Content-Length": "100"}
    half_body = http_request("POST", BODY_ROUTES[name], headers) + b'{"text": "Hello'

    async def leave() -> None:
        conn = await RawConnection.open(edge.port)
        await conn.send(half_body)
        await asyncio.sleep(0.2)
        conn.close()

    # The stalled one waits out the body timeout, by when the one that left has been dealt with.
    _, stalled = await asyncio.gather(leave(), exchange(edge.port, half_body, WAIT_S))
    assert stalled.closed and stalled.status == 408, stalled.data
    assert b"stalled: nothing of it arrived for 1 s" in stalled.body
    assert log.problems() == []
