"""Fuzz `/api/asr-streaming` and the STT's HTTP routes while a healthy stream runs beside.

Each case must leave: every hostile connection answered with an `Error` or closed with a
close frame, the healthy stream's `Step`s never more than 1 s apart, no traceback in the
log, `asr_open_channels` back to zero, and (after churn) RSS within 10 % of its baseline.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import struct

import httpx
import msgpack
import numpy as np
import pytest
import soundfile
import websockets
from hypothesis import given
from hypothesis import strategies as st
from websockets.sync.client import connect as sync_connect

from tests.fuzz.harness import (
    FLOATS,
    HUGE_INTS,
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
from tests.stt_client import FRAME, audio_msg, marker_msg

pytestmark = pytest.mark.lite

PROBE_BASE = 7_000_000
# Over the message limit (MAX_MESSAGE_BYTES, which is also the transport's frame limit): the
# server closes with 1009 while the client is still writing, so the kernel's reset may eat that
# close frame; for such frames only a clean log and a healthy service are required.
OVERSIZE = (2 * 1024 * 1024 + 1, 20 * 1024 * 1024)
TRANSPORT_LIMIT = 2 * 1024 * 1024
ROUTES = ["/health", "/ready", "/metrics", "/api/build_info", "/api/asr-streaming", "/v1/transcribe", "/"]

PCM = st.one_of(
    st.lists(st.floats(-1, 1, width=32), max_size=6000),
    st.lists(FLOATS | st.integers(-(2**40), 2**40), max_size=200),
    wild(),
)
STT_FRAMES = st.one_of(
    st.binary(max_size=300),
    wild().map(pack),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["Audio", "Marker", "Init", "OggOpus", "Ready"]) | wild()},
        optional={"pcm": PCM, "id": wild() | HUGE_INTS, "data": wild()},
    ).map(pack),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["Audio", "Marker"]) | LONE_SURROGATE_TEXT},
        optional={"id": LONE_SURROGATE_TEXT, "pcm": LONE_SURROGATE_TEXT},
    ).map(pack),
    st.sampled_from([64, 1000, 200_000]).map(deep_msgpack),
    st.sampled_from(OVERSIZE).map(lambda n: pack({"type": "Audio", "pcm": b"\0" * n})),
    st.text(max_size=200),  # a text frame
)


def probe(url: str, key: str, payload: bytes | str, marker: int) -> list[str]:
    """Send one payload on a fresh stream, then a Marker: the echo must come back, or the
    stream must end with a close frame. Errors on the way are fine."""
    what = f"payload {payload[:120]!r} ({len(payload)} bytes)"
    try:
        with sync_connect(
            f"{url}/api/asr-streaming", additional_headers={"kyutai-api-key": key}, max_size=None
        ) as ws:
            if msgpack.unpackb(ws.recv(timeout=10))["type"] != "Ready":
                return []  # at capacity: a clear answer
            ws.send(payload)
            ws.send(marker_msg(marker))
            while True:
                msg = msgpack.unpackb(ws.recv(timeout=10))
                if msg == {"type": "Marker", "id": marker}:
                    return []
    except websockets.ConnectionClosed as exc:
        return close_finding(exc, what) if len(payload) <= TRANSPORT_LIMIT else []
    except TimeoutError:
        return [f"{what}: no Marker echo and no close within 10 s"]


def check_after(stt, log: LogWatch, reports) -> list[str]:
    return [
        *reports[0].check(),
        *log.problems(),
        *settle([(stt, "asr_open_channels")]),
        *alive(stt),
    ]


def test_random_frames_get_errors_and_the_neighbour_keeps_stepping(stt, tmp_path):
    findings: list[str] = []
    counter = iter(range(PROBE_BASE, PROBE_BASE + 10_000))

    @fuzz(150)
    @given(STT_FRAMES)
    def one(payload: bytes | str) -> None:
        # Once the service stalls, every further probe would only wait out its timeout.
        if not any("within 10 s" in f for f in findings):
            findings.extend(probe(stt.ws, stt.api_key, payload, next(counter)))

    log = LogWatch(stt)
    with healthy("stt", stt.ws, stt.api_key, tmp_path) as reports:
        one()
    findings += check_after(stt, log, reports)
    assert not findings, "\n".join(findings)


def loud(seconds: float, seed: int) -> np.ndarray:
    """Full-scale noise: a ±1.0 square wave or white noise, as a hostile client may send."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 24000)
    if seed % 2:
        period = int(rng.integers(8, 400))
        return np.where((np.arange(n) // period) % 2, 1.0, -1.0).astype(np.float32)
    return rng.uniform(-1, 1, n).astype(np.float32)


async def flood(url: str, key: str, kind: str, seconds: float, seed: int) -> list[str]:
    """One connection sending one kind of message as fast as the server takes it."""
    rng = np.random.default_rng(seed)
    findings: list[str] = []
    what = f"{kind} flood (seed {seed})"
    async with websockets.connect(
        f"{url}/api/asr-streaming",
        additional_headers={"kyutai-api-key": key},
        max_size=None,
        ping_interval=1.0,
        ping_timeout=5.0,
    ) as ws:
        if msgpack.unpackb(await ws.recv())["type"] != "Ready":
            return [f"{what}: no slot for the flood"]

        echoed = asyncio.Event()

        async def read() -> None:
            async for raw in ws:
                if msgpack.unpackb(raw) == {"type": "Marker", "id": -1}:
                    echoed.set()

        reader = asyncio.create_task(read())
        noise = loud(15.0, seed)
        loop = asyncio.get_running_loop()
        end, n = loop.time() + seconds, 0
        try:
            # Audio stops at 20 s: full-scale noise is the lite engine's slowest input (about 5x
            # real time), and the Marker after it must come back within the probe's wait.
            while (loop.time() < end and (kind != "Audio" or n < 20)) or (
                kind == "Audio" and n * 24000 < noise.size
            ):
                if kind == "Audio":
                    chunk = noise[(n * 24000) % noise.size :][:24000]
                    payload: bytes | str = audio_msg(chunk)
                elif kind == "Marker":
                    payload = marker_msg(n)
                elif kind == "junk":
                    payload = rng.bytes(int(rng.integers(1, 200)))
                elif kind == "text":
                    payload = "x" * int(rng.integers(0, 200))
                else:
                    payload = pack({"type": kind})
                await ws.send(payload)
                await asyncio.sleep(0)  # a client that reads while it sends
                n += 1
            await ws.send(marker_msg(-1))
            await asyncio.wait_for(
                asyncio.wait(
                    {reader, asyncio.ensure_future(echoed.wait())}, return_when=asyncio.FIRST_COMPLETED
                ),
                30,
            )
            if not echoed.is_set():
                await reader  # raises the close
        except websockets.ConnectionClosed as exc:
            findings += close_finding(exc, what)
        except TimeoutError:
            findings.append(f"{what}: its Marker was not echoed within 30 s after {n} messages")
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                await reader
    return findings


FLOOD_KINDS = ("Audio", "Marker", "junk", "text", "Init")


def test_floods_of_each_message_kind(stt, tmp_path):
    log = LogWatch(stt)
    findings: list[str] = []
    with healthy("stt", stt.ws, stt.api_key, tmp_path) as reports:
        for seed, kind in enumerate(FLOOD_KINDS):
            findings += asyncio.run(flood(stt.ws, stt.api_key, kind, 2.0, seed))
        # Full-scale noise on every free slot at once, beside the healthy stream.
        findings += asyncio.run(
            gather_findings(*(flood(stt.ws, stt.api_key, "Audio", 0.0, s) for s in (11, 12)))
        )
    findings += check_after(stt, log, reports)
    assert not findings, "\n".join(findings)


UPGRADE = (
    "GET /api/asr-streaming HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    "kyutai-api-key: {key}\r\n\r\n"
)


async def churn_one(url: str, key: str, port: int, mode: int, seed: int) -> list[str]:
    """One short-lived client; `mode` picks how it leaves."""
    rng = np.random.default_rng(seed)
    if mode in (0, 1):
        # Leave mid-connect: half an upgrade request, or a whole one without reading the answer.
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        request = UPGRADE.format(key=key).encode()
        writer.write(request[: int(rng.integers(1, len(request)))] if mode == 0 else request)
        await writer.drain()
        writer.transport.abort()
        return []
    try:
        async with websockets.connect(
            f"{url}/api/asr-streaming", additional_headers={"kyutai-api-key": key}, max_size=None
        ) as ws:
            if mode == 2:
                return []  # close before reading Ready
            await ws.recv()
            if mode == 3:
                await ws.send(audio_msg(loud(float(rng.uniform(0.1, 3)), seed)))
            elif mode == 4:
                for n in range(int(rng.integers(50, 400))):
                    await ws.send(marker_msg(n))
            elif mode == 5:
                await ws.send(audio_msg(np.zeros(FRAME * 30, np.float32)))
                ws.transport.abort()  # vanish without a close frame
    except websockets.ConnectionClosed as exc:
        return close_finding(exc, f"churn mode {mode}")
    return []


def test_connect_close_churn_frees_every_slot_and_memory(stt, tmp_path):
    log = LogWatch(stt)
    findings = churn(
        [stt],
        lambda mode, seed: churn_one(stt.ws, stt.api_key, stt.port, mode, seed),
        clients=8,
        modes=6,
        watched=lambda: healthy("stt", stt.ws, stt.api_key, tmp_path),
        settled=lambda: settle([(stt, "asr_open_channels")]),
        after=lambda reports: check_after(stt, log, reports),
    )
    assert not findings, "\n".join(findings)


def wav(rate: int, channels: int, bits: int, frames: int, *, declared: int | None, seed: int) -> bytes:
    """A RIFF/WAVE file whose header may lie (rate, channels, sizes)."""
    data = np.random.default_rng(seed).bytes(frames * max(channels, 1) * max(bits // 8, 1))
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * bits // 8 & 0xFFFFFFFF, 0, bits)
    size = len(data) if declared is None else declared
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", size) + data
    return b"RIFF" + struct.pack("<I", len(body) & 0xFFFFFFFF) + body


WAVS = st.builds(
    wav,
    rate=st.sampled_from([0, 1, 8, 8000, 16000, 24000, 48000, 2**31 - 1]),
    channels=st.sampled_from([0, 1, 2, 7, 65535]),
    bits=st.sampled_from([0, 7, 8, 16, 24, 32]),
    frames=st.integers(0, 2000),
    declared=st.none() | st.sampled_from([0, 1, 2**31, 2**32 - 1]),
    seed=st.integers(0, 100),
)


def good_wav() -> bytes:
    out = io.BytesIO()
    soundfile.write(out, loud(0.5, 2) * 0.1, 24000, format="WAV")
    return out.getvalue()


HTTP_CASES = st.one_of(
    st.tuples(st.just("POST"), st.just("/v1/transcribe"), WAVS | st.binary(max_size=500)),
    st.tuples(
        st.sampled_from(["GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD", "PATCH"]),
        paths(ROUTES),
        st.binary(max_size=200),
    ),
)


def test_http_routes_never_answer_5xx_and_the_neighbour_keeps_stepping(stt, tmp_path):
    log = LogWatch(stt)
    findings: list[str] = []
    with (
        healthy("stt", stt.ws, stt.api_key, tmp_path) as reports,
        httpx.Client(base_url=stt.http, timeout=30) as client,
    ):
        ok = client.post("/v1/transcribe", content=good_wav(), headers={"kyutai-api-key": stt.api_key})
        assert ok.status_code == 200, ok.text

        @fuzz(150)
        @given(HTTP_CASES, st.booleans())
        def one(case: tuple[str, str, bytes], with_key: bool) -> None:
            method, path, body = case
            headers = {"kyutai-api-key": stt.api_key} if with_key else {}
            response = client.request(method, path, content=body, headers=headers)
            if response.status_code >= 500:
                findings.append(
                    f"{method} {path} body {body[:80]!r}: {response.status_code} {response.text[:200]}"
                )

        one()
    findings += check_after(stt, log, reports)
    assert not findings, "\n".join(findings)


def test_header_and_frame_bytes_that_are_not_utf8_get_a_clear_answer(stt, tmp_path):
    log = LogWatch(stt)
    with healthy("stt", stt.ws, stt.api_key, tmp_path) as reports:
        findings = edge_findings(stt.port, ROUTES, "/api/asr-streaming", {"kyutai-api-key": stt.api_key}, 100)
    findings += check_after(stt, log, reports)
    assert not findings, "\n".join(findings)
