"""Fuzz `/api/tts_streaming` and the TTS's HTTP routes while a healthy stream runs beside.

Each case must leave: every hostile stream answered with an `Error` or closed with a close
frame, the healthy stream's audio never more than 1 s apart and never ended by someone
else's input, no traceback in the log, `py_open_channels` back to zero, and (after churn)
RSS within 10 % of its baseline.
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlencode

import httpx
import msgpack
import numpy as np
import pytest
import websockets
from hypothesis import given
from hypothesis import strategies as st
from websockets.sync.client import connect as sync_connect

from kit.audio import SAMPLE_RATE
from tests.fuzz.harness import (
    LONE_SURROGATE_TEXT,
    LogWatch,
    alive,
    churn,
    close_finding,
    deep_msgpack,
    edge_findings,
    fuzz,
    gather_findings,
    healthy,
    pack,
    paths,
    settle,
    wild,
)
from tests.tts_client import EOS, text_msg

pytestmark = pytest.mark.lite

# MAX_MESSAGE_BYTES, also the transport's frame limit: a bigger frame is closed with 1009 while
# the client still writes, and the kernel's reset may eat that close frame.
TRANSPORT_LIMIT = 2 * 1024 * 1024
ROUTES = [
    "/health",
    "/ready",
    "/metrics",
    "/api/build_info",
    "/v1/voices",
    "/api/tts_streaming",
    "/synthesize",
]


@st.composite
def voices(draw) -> dict[str, object]:
    """Voice embeddings whose shape and size agree often enough to get past the size check."""
    shape = draw(st.lists(st.integers(-4, 4), min_size=0, max_size=4) | wild())
    size = int(np.prod(shape)) if isinstance(shape, list) and all(type(v) is int for v in shape) else 0
    n = draw(st.sampled_from([abs(size), abs(size) + 1]) | st.integers(0, 50)) if abs(size) < 10_000 else 0
    embeddings = draw(st.lists(st.floats(-3, 3, width=32), min_size=n, max_size=n) | wild())
    return {"type": "Voice", "embeddings": embeddings, "shape": shape}


TEXTS = (
    st.text(max_size=60)
    | st.sampled_from([4000, 4001, 20_000]).map(lambda n: ("word " * n)[:n])
    | LONE_SURROGATE_TEXT  # sent as JSON escapes, or as msgpack bytes that are not UTF-8
)
TTS_FRAMES = st.one_of(
    st.binary(max_size=300),
    wild().map(pack),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["Text", "Eos", "Voice", "Audio"]) | wild()},
        optional={"text": TEXTS | wild(), "embeddings": wild(), "shape": wild()},
    ).map(pack),
    voices().map(pack),
    TEXTS.map(lambda text: pack({"type": "Text", "text": text})),
    st.sampled_from([64, 1000, 200_000]).map(deep_msgpack),
    st.sampled_from([2 * 1024 * 1024 + 1, 20 * 1024 * 1024]).map(
        lambda n: pack({"type": "Text", "text": "a" * n})
    ),
    st.text(max_size=200),  # a text frame: moshi-server reads it as Text
    st.just(b"\x00"),  # the binary Eos
)
QUERIES = st.fixed_dictionaries(
    {},
    optional={
        "voice": st.text(max_size=30),
        "cfg_alpha": st.text(max_size=8) | st.floats().map(str),
        "format": st.sampled_from(["Pcm", "PcmMessagePack", "OggOpus", ""]),
        "seed": st.text(max_size=5),
    },
)


# A text of 4000 characters is accepted and speaks for minutes (about 25 s of 2 cores): past
# this much audio the fuzz client hangs up, as a listener may, rather than hear it all.
HANG_UP_AFTER_AUDIO_S = 3.0


def audio_seconds(message: bytes | str) -> float:
    """How much audio a server message carries (0 for anything but a msgpack `Audio`)."""
    try:
        decoded = msgpack.unpackb(message) if isinstance(message, bytes) else None
    except (ValueError, msgpack.UnpackException):
        return 0.0
    if isinstance(decoded, dict) and decoded.get("type") == "Audio":
        return len(decoded.get("pcm", ())) / SAMPLE_RATE
    return 0.0


def stream(
    url: str, key: str, query: dict[str, str], payloads: list[bytes | str], wait_s: float = 20
) -> list[str]:
    """One stream: the payloads, then `Eos`, then read until the server closes (or hang up once
    it has spoken `HANG_UP_AFTER_AUDIO_S`)."""
    what = f"query {query} payloads {[p[:80] for p in payloads]} ({sum(len(p) for p in payloads)} bytes)"
    params = {"format": "PcmMessagePack", **query}
    try:
        with sync_connect(
            f"{url}/api/tts_streaming?{urlencode(params)}",
            additional_headers={"kyutai-api-key": key},
            max_size=None,
        ) as ws:
            for payload in payloads:
                ws.send(payload)
            ws.send(EOS)
            audio_s = 0.0
            while audio_s < HANG_UP_AFTER_AUDIO_S:
                message = ws.recv(timeout=20)
                audio_s += audio_seconds(message)
            return []  # hung up mid-reply: the slot must still come free (check_after's settle)
    except websockets.InvalidStatus as exc:
        status = exc.response.status_code
        return [] if status in (400, 401) else [f"{what}: refused with HTTP {status}"]
    except websockets.ConnectionClosed as exc:
        too_big = any(len(p) > TRANSPORT_LIMIT for p in payloads)
        return [] if too_big else close_finding(exc, what)
    except TimeoutError:
        return [f"{what}: no close within 20 s of Eos"]
    except (OSError, websockets.InvalidHandshake) as exc:
        # A finding, not a raise: Hypothesis replays a raising case, and one that passes on replay
        # is reported as "flaky" without the first failure's message.
        return [f"{what}: {exc!r}"]


def check_after(tts, log: LogWatch, reports) -> list[str]:
    return [*reports[0].check(), *log.problems(), *settle([(tts, "py_open_channels")]), *alive(tts)]


def test_random_messages_get_errors_and_the_neighbour_keeps_speaking(tts, tmp_path):
    findings: list[str] = []

    @fuzz(150)
    @given(QUERIES, st.lists(TTS_FRAMES, min_size=1, max_size=3))
    def one(query: dict[str, str], payloads: list[bytes | str]) -> None:
        if not any("no close within" in f for f in findings):
            findings.extend(stream(tts.ws, tts.api_key, query, payloads))

    log = LogWatch(tts)
    with healthy("tts", tts.ws, tts.api_key, tmp_path) as reports:
        one()
    findings += check_after(tts, log, reports)
    assert not findings, "\n".join(findings)


def test_every_listed_voice_speaks_or_is_refused_alone(tts, tmp_path):
    listed = httpx.get(f"{tts.http}/v1/voices", timeout=5).json()["voices"]
    log = LogWatch(tts)
    findings: list[str] = []
    headers = {"kyutai-api-key": tts.api_key}
    with healthy("tts", tts.ws, tts.api_key, tmp_path) as reports, httpx.Client(timeout=30) as client:
        for voice in listed:
            findings += stream(tts.ws, tts.api_key, {"voice": voice}, [text_msg("Hello there.")])
            response = client.post(
                f"{tts.http}/synthesize", json={"text": "Hello there.", "voice": voice}, headers=headers
            )
            if response.status_code == 200 and not response.content:
                findings.append(f"POST /synthesize voice {voice!r}: 200 with an empty body")
            elif response.status_code >= 500:
                findings.append(f"POST /synthesize voice {voice!r}: {response.status_code}")
    findings += check_after(tts, log, reports)
    assert not findings, f"{len(listed)} voices:\n" + "\n".join(findings)


async def flood(url: str, key: str, kind: str, seconds: float, seed: int) -> list[str]:
    """One stream sending one kind of message as fast as the server takes it, then Eos."""
    what = f"{kind} flood (seed {seed})"
    try:
        async with websockets.connect(
            f"{url}/api/tts_streaming?format=PcmMessagePack",
            additional_headers={"kyutai-api-key": key},
            max_size=None,
            ping_interval=1.0,
            ping_timeout=5.0,
        ) as ws:
            if msgpack.unpackb(await ws.recv())["type"] != "Ready":
                return [f"{what}: no slot for the flood"]
            reader = asyncio.create_task(_drain(ws))
            try:
                await _send_flood(ws, kind, seconds, np.random.default_rng(seed), reader)
                await asyncio.wait_for(reader, 60)
            finally:
                # A close that ends the sending ends the reader too: its end is retrieved here.
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
    except websockets.ConnectionClosed as exc:
        return close_finding(exc, what)
    except TimeoutError:
        return [f"{what}: no close within 60 s of Eos"]
    return []


async def _send_flood(ws, kind: str, seconds: float, rng: np.random.Generator, reader: asyncio.Task) -> None:
    """`kind` messages for `seconds` (or until the server closes), then Eos."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end and not reader.done():
        if kind == "Text":
            payload: bytes | str = text_msg(" ".join(["word"] * int(rng.integers(1, 4))))
        elif kind == "Voice":
            payload = pack({"type": "Voice", "embeddings": [0.0] * 6, "shape": [1, 2, 3]})
        elif kind == "junk":
            payload = rng.bytes(int(rng.integers(1, 200)))
        elif kind == "text":
            payload = "hi " * int(rng.integers(0, 4))
        else:
            payload = EOS
        await ws.send(payload)
        await asyncio.sleep(0)  # a client that reads while it sends
    await ws.send(EOS)


async def _drain(ws) -> None:
    async for _ in ws:
        pass


def test_floods_of_each_message_kind(tts, tmp_path):
    log = LogWatch(tts)
    findings: list[str] = []
    with healthy("tts", tts.ws, tts.api_key, tmp_path) as reports:
        for seed, kind in enumerate(("Text", "Eos", "Voice", "junk", "text")):
            findings += asyncio.run(flood(tts.ws, tts.api_key, kind, 2.0, seed))
        findings += asyncio.run(
            gather_findings(*(flood(tts.ws, tts.api_key, "Text", 2.0, s) for s in (7, 8)))
        )
    findings += check_after(tts, log, reports)
    assert not findings, "\n".join(findings)


UPGRADE = (
    "GET /api/tts_streaming?format=PcmMessagePack HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    "kyutai-api-key: {key}\r\n\r\n"
)


async def churn_one(tts, mode: int, seed: int) -> list[str]:
    """One short-lived client; `mode` picks how it leaves."""
    rng = np.random.default_rng(seed)
    if mode in (0, 1):
        _, writer = await asyncio.open_connection("127.0.0.1", tts.port)
        request = UPGRADE.format(key=tts.api_key).encode()
        writer.write(request[: int(rng.integers(1, len(request)))] if mode == 0 else request)
        await writer.drain()
        writer.transport.abort()
        return []
    try:
        async with websockets.connect(
            f"{tts.ws}/api/tts_streaming?format=PcmMessagePack",
            additional_headers={"kyutai-api-key": tts.api_key},
        ) as ws:
            if mode == 2:
                return []  # close before reading Ready
            await ws.recv()
            await ws.send(text_msg("Some words that start the engine. " * int(rng.integers(1, 6))))
            if mode == 3:
                await ws.recv()  # leave mid-audio
            elif mode == 4:
                await ws.send(EOS)
                ws.transport.abort()  # vanish without a close frame
            elif mode == 5:
                await ws.send(EOS)
                await _drain(ws)
    except websockets.ConnectionClosed as exc:
        return close_finding(exc, f"churn mode {mode}")
    return []


def test_connect_close_churn_frees_every_slot_and_memory(tts, tmp_path):
    log = LogWatch(tts)
    findings = churn(
        [tts],
        lambda mode, seed: churn_one(tts, mode, seed),
        clients=8,
        modes=6,
        watched=lambda: healthy("tts", tts.ws, tts.api_key, tmp_path),
        settled=lambda: settle([(tts, "py_open_channels")]),
        after=lambda reports: check_after(tts, log, reports),
    )
    assert not findings, "\n".join(findings)


SYNTH_BODIES = st.one_of(
    st.fixed_dictionaries(
        {"text": TEXTS | wild()},
        optional={"voice": st.text(max_size=20) | wild(), "cfg_alpha": wild()},
    ).map(lambda body: json.dumps(body).encode()),
    wild().map(lambda v: json.dumps(v).encode()),
    # Words to speak around a lone surrogate: once answered 200 with no audio, the words lost.
    LONE_SURROGATE_TEXT.map(lambda text: json.dumps({"text": f"Hello there, {text} my friend."}).encode()),
    st.binary(max_size=200),
    st.sampled_from([b"[" * 100_000, b'{"text": ' + b"1" * 5000 + b"}"]),
)
HTTP_CASES = st.one_of(
    st.tuples(st.just("POST"), st.just("/synthesize"), SYNTH_BODIES),
    st.tuples(
        st.sampled_from(["GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD"]),
        paths(ROUTES),
        st.binary(max_size=200),
    ),
)


def test_http_routes_never_answer_5xx_and_the_neighbour_keeps_speaking(tts, tmp_path):
    log = LogWatch(tts)
    findings: list[str] = []
    with (
        healthy("tts", tts.ws, tts.api_key, tmp_path) as reports,
        httpx.Client(base_url=tts.http, timeout=60) as client,
    ):

        @fuzz(150)
        @given(HTTP_CASES, st.booleans())
        def one(case: tuple[str, str, bytes], with_key: bool) -> None:
            method, path, body = case
            headers = {"kyutai-api-key": tts.api_key, "content-type": "application/json"} if with_key else {}
            response = client.request(method, path, content=body, headers=headers)
            if response.status_code >= 500:
                answer = f"{response.status_code} {response.text[:200]}"
                findings.append(f"{method} {path} body {body[:80]!r}: {answer}")
            elif path == "/synthesize" and response.status_code == 200 and not response.content:
                findings.append(f"{method} {path} body {body[:80]!r}: 200 with no audio")

        one()
    findings += check_after(tts, log, reports)
    assert not findings, "\n".join(findings)


def test_header_and_frame_bytes_that_are_not_utf8_get_a_clear_answer(tts, tmp_path):
    log = LogWatch(tts)
    with healthy("tts", tts.ws, tts.api_key, tmp_path) as reports:
        findings = edge_findings(tts.port, ROUTES, "/api/tts_streaming", {"kyutai-api-key": tts.api_key}, 100)
    findings += check_after(tts, log, reports)
    assert not findings, "\n".join(findings)
