"""Fuzz `/v1/realtime` and the orchestrator's HTTP routes while a healthy session talks beside.

Each case must leave: every hostile connection answered with `error` events or closed with a
close frame, every server event valid for the `openai` SDK's schema, the healthy session's
replies complete with no event gap over 1 s, no traceback in any log, no session, STT slot
or TTS slot left open, and (after churn) the orchestrator's RSS within 10 % of its baseline.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import typing

import httpx
import numpy as np
import pytest
import websockets
from hypothesis import given
from hypothesis import strategies as st
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter, ValidationError
from websockets.sync.client import connect as sync_connect

from orchestrator.realtime.client_events import CLIENT_EVENTS
from tests.fuzz.harness import (
    LONE_SURROGATE_TEXT,
    TEXT,
    LogWatch,
    alive,
    churn,
    close_finding,
    edge_findings,
    fuzz,
    healthy,
    paths,
    settle,
    wild,
)

pytestmark = pytest.mark.lite

SERVER_EVENTS: TypeAdapter[object] = TypeAdapter(RealtimeServerEvent)
# The client events this server implements, as its event models name them.
EVENT_TYPES = sorted(typing.get_args(m.model_fields["type"].annotation)[0] for m in CLIENT_EVENTS)
SESSION_KEYS = st.sampled_from(
    ["audio", "input", "output", "voice", "turn_detection", "format", "type", "rate", "instructions",
     "max_output_tokens", "threshold", "silence_duration_ms", "create_response", "interrupt_response"]
)  # fmt: skip
JSON_NUMBERS = st.integers() | st.sampled_from([2**64, -(10**400)]) | st.floats()
B64 = st.binary(max_size=3000).map(lambda b: base64.b64encode(b).decode())
# Python refuses to print integers of over 4300 digits, so such events are written as text.
HUGE_INT_EVENT = '{{"type": "input_audio_buffer.commit", "x": {}}}'


def event_json(value: object) -> str:
    return json.dumps(value)  # NaN and Infinity go out as JSON's non-standard literals


EVENTS = st.one_of(
    st.fixed_dictionaries(
        {"type": st.sampled_from(EVENT_TYPES) | wild(JSON_NUMBERS)},
        optional={
            "event_id": wild(JSON_NUMBERS),
            "session": wild(JSON_NUMBERS, SESSION_KEYS),
            "audio": st.binary(max_size=3000).map(lambda b: base64.b64encode(b).decode())
            | wild(JSON_NUMBERS),
            "response": wild(JSON_NUMBERS),
            "response_id": wild(JSON_NUMBERS),
            "item_id": wild(JSON_NUMBERS),
            "audio_end_ms": wild(JSON_NUMBERS),
            "content_index": wild(JSON_NUMBERS),
        },
    ).map(event_json),
    wild(JSON_NUMBERS).map(event_json),
    st.sampled_from([10, 1000, 100_000]).map(lambda n: "[" * n + "]" * n),
    st.sampled_from([4301, 10_000]).map(
        lambda n: '{"type": "input_audio_buffer.commit", "x": ' + "7" * n + "}"
    ),
    # A lone surrogate (as a JSON escape) in each kind of text a client sends.
    st.fixed_dictionaries(
        {"type": st.sampled_from(EVENT_TYPES), "event_id": LONE_SURROGATE_TEXT},
    ).map(event_json),
    LONE_SURROGATE_TEXT.map(lambda text: {"type": "session.update", "session": {"instructions": text}}).map(
        event_json
    ),
    LONE_SURROGATE_TEXT.map(
        lambda text: {
            "type": "conversation.item.create",
            "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]},
        }
    ).map(event_json),
    TEXT,
    st.binary(max_size=2000),  # binary frames are float32 audio
    st.sampled_from([1024 * 1024 + 4, 2 * 1024 * 1024]).map(lambda n: b"\0" * n),
)


class Checked:
    """A fuzz connection that records what is wrong with what the server sends."""

    def __init__(self, stack, findings: list[str]) -> None:
        self.stack, self.findings = stack, findings
        self.ws = None
        self.probes = 0
        self._exit = contextlib.ExitStack()

    def connect(self) -> None:
        self.ws = self._exit.enter_context(
            sync_connect(
                f"{self.stack.orchestrator.ws}/v1/realtime",
                additional_headers={"Authorization": f"Bearer {self.stack.token}"},
                max_size=None,
            )
        )

    def event(self, raw: str) -> dict:
        event = json.loads(raw)
        if not event["type"].startswith("unmute_slurm."):
            try:
                SERVER_EVENTS.validate_python(event)
            except ValidationError as exc:
                first = exc.errors(include_url=False)[0]
                where = f"{first['loc']} {first['msg']}"
                problem = f"server event {event['type']} fails the openai SDK's schema: {where}"
                if problem not in self.findings:
                    self.findings.append(problem)
        return event

    def send(self, payload: str | bytes, wait_s: float = 15) -> None:
        """The payload, then a probe whose error must come back (or a close with a frame)."""
        what = f"payload {payload[:120]!r} ({len(payload)} chars)"
        if self.ws is None:
            self.connect()
        assert self.ws is not None
        self.probes += 1
        probe = f"probe-{self.probes}"
        try:
            self.ws.send(payload)
            self.ws.send(json.dumps({"type": "fuzz.probe", "event_id": probe}))
            while True:
                event = self.event(self.ws.recv(timeout=wait_s))
                if event["type"] == "error" and event["error"].get("event_id") == probe:
                    return
        except websockets.ConnectionClosed as exc:
            self.findings += close_finding(exc, what)
            self.close()
        except TimeoutError:
            self.findings.append(f"{what}: no answer to the next event within {wait_s:.0f} s")
            self.close()

    def close(self) -> None:
        self._exit.close()
        self.ws = None


def leftovers(stack) -> list[str]:
    return settle(
        [
            (stack.orchestrator, "orchestrator_sessions"),
            (stack.stt, "asr_open_channels"),
            (stack.tts, "py_open_channels"),
        ]
    )


def check_after(stack, logs: list[LogWatch], reports) -> list[str]:
    return [
        *reports[0].check(),
        *(p for log in logs for p in log.problems()),
        *leftovers(stack),
        *(p for s in (stack.orchestrator, stack.stt, stack.tts) for p in alive(s)),
    ]


def watch_logs(stack) -> list[LogWatch]:
    return [LogWatch(s) for s in (stack.orchestrator, stack.stt, stack.tts)]


def test_random_events_get_errors_and_the_neighbour_keeps_talking(stack, tmp_path):
    findings: list[str] = []
    client = Checked(stack, findings)

    @fuzz(200)
    @given(EVENTS)
    def one(payload: str | bytes) -> None:
        if not any("no answer" in f for f in findings):
            client.send(payload)

    logs = watch_logs(stack)
    with healthy("realtime", stack.orchestrator.ws, stack.token, tmp_path) as reports:
        try:
            one()
        finally:
            client.close()
    findings += check_after(stack, logs, reports)
    assert not findings, "\n".join(findings)


def pcm16(seconds: float, seed: int) -> str:
    rng = np.random.default_rng(seed)
    samples = (rng.uniform(-1, 1, int(seconds * 24000)) * 32767).astype("<i2")
    return base64.b64encode(samples.tobytes()).decode()


FLOODS = {
    "input_audio_buffer.append": lambda n: {"audio": pcm16(0.1, n)},
    "input_audio_buffer.commit": lambda n: {},
    "input_audio_buffer.clear": lambda n: {},
    "response.create": lambda n: {},
    "response.cancel": lambda n: {},
    "session.update": lambda n: {"session": {"instructions": f"be brief {n}"}},
    "conversation.item.truncate": lambda n: {"item_id": f"item_{n}", "audio_end_ms": n},
}


def test_floods_of_each_event_type(stack, tmp_path):
    findings: list[str] = []
    logs = watch_logs(stack)
    with healthy("realtime", stack.orchestrator.ws, stack.token, tmp_path) as reports:
        for kind, fields in FLOODS.items():
            client = Checked(stack, findings)
            client.connect()
            assert client.ws is not None
            sent, end = 0, time.monotonic() + 1.5
            try:
                while time.monotonic() < end:
                    client.ws.send(json.dumps({"type": kind, **fields(sent)}))
                    sent += 1
                client.send(json.dumps({"type": "input_audio_buffer.clear"}), wait_s=30)
            except websockets.ConnectionClosed as exc:
                findings += close_finding(exc, f"{kind} flood")
            finally:
                client.close()
    findings += check_after(stack, logs, reports)
    assert not findings, "\n".join(findings)


async def churn_one(stack, mode: int, seed: int) -> list[str]:
    """One short-lived session; `mode` picks when it leaves."""
    headers = {"Authorization": f"Bearer {stack.token}"}
    if mode == 0:
        # Leave before the upgrade completes.
        _, writer = await asyncio.open_connection("127.0.0.1", stack.orchestrator.port)
        writer.write(
            f"GET /v1/realtime HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {stack.token}\r\n\r\n".encode()
        )
        await writer.drain()
        writer.transport.abort()
        return []
    try:
        async with websockets.connect(
            f"{stack.orchestrator.ws}/v1/realtime", additional_headers=headers, max_size=None
        ) as ws:
            if mode == 1:
                return []  # before session.created: the STT stream is still connecting
            await ws.recv()
            if mode == 2:
                return []
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": pcm16(0.5, seed)}))
            if mode == 3:
                ws.transport.abort()
                return []
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            await ws.send(json.dumps({"type": "response.create"}))
            await asyncio.sleep(seed % 7 / 10)  # leave somewhere in the reply
    except websockets.ConnectionClosed as exc:
        return close_finding(exc, f"churn mode {mode}")
    return []


def test_connect_close_churn_leaves_no_session_slot_or_memory(stack, tmp_path):
    logs = watch_logs(stack)
    findings = churn(
        [stack.orchestrator, stack.stt, stack.tts],
        lambda mode, seed: churn_one(stack, mode, seed),
        clients=10,
        modes=5,
        each=5,
        watched=lambda: healthy("realtime", stack.orchestrator.ws, stack.token, tmp_path),
        settled=lambda: leftovers(stack),
        after=lambda reports: check_after(stack, logs, reports),
    )
    assert not findings, "\n".join(findings)


ROUTES = ["/", "/api/status", "/api/voices", "/static/app.js", "/static/../app.py", "/health", "/ready",
          "/metrics", "/api/build_info", "/v1/realtime"]  # fmt: skip
HTTP_CASES = st.tuples(
    st.sampled_from(["GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD"]),
    paths(ROUTES),
    st.sampled_from(["", "?token=wrong", "?token={token}", "?token=" + "x" * 5000]),
    st.binary(max_size=200),
    st.sampled_from(["none", "bearer", "cookie", "wrong"]),
)


def test_http_routes_never_answer_5xx_and_the_neighbour_keeps_talking(stack, tmp_path):
    logs = watch_logs(stack)
    findings: list[str] = []
    with (
        healthy("realtime", stack.orchestrator.ws, stack.token, tmp_path) as reports,
        httpx.Client(base_url=stack.orchestrator.http, timeout=30, follow_redirects=False) as client,
    ):

        @fuzz(150)
        @given(HTTP_CASES)
        def one(case: tuple[str, str, str, bytes, str]) -> None:
            method, path, query, body, auth = case
            headers = {
                "none": {},
                "bearer": {"Authorization": f"Bearer {stack.token}"},
                "cookie": {"Cookie": f"unmute_token={stack.token}"},
                "wrong": {"Authorization": "Bearer nope"},
            }[auth]
            url = path + query.format(token=stack.token)
            response = client.request(method, url, content=body, headers=headers)
            if response.status_code >= 500:
                answer = f"{response.status_code} {response.text[:200]}"
                findings.append(f"{method} {url[:100]} ({auth}): {answer}")

        one()
    findings += check_after(stack, logs, reports)
    assert not findings, "\n".join(findings)


def test_header_and_frame_bytes_that_are_not_utf8_get_a_clear_answer(stack, tmp_path):
    logs = watch_logs(stack)
    auth = {"Authorization": f"Bearer {stack.token}"}
    with healthy("realtime", stack.orchestrator.ws, stack.token, tmp_path) as reports:
        findings = edge_findings(stack.orchestrator.port, ROUTES, "/v1/realtime", auth, 100)
    findings += check_after(stack, logs, reports)
    assert not findings, "\n".join(findings)
