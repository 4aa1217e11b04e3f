"""Kyutai's clients, message for message.

`send_like_dsm_file_client` reproduces what delayed-streams-modeling's
scripts/stt_from_file_rust_server.py sends (1 s of leading zeros in one message, the file
in 1920-sample chunks, 5 x 1 s of zeros, Marker 0, then 35 x 1 s of zeros unpaced while it
reads) and how it reads (stop at the Marker, then close while the tail may still be in
flight). The unchanged script was also run by hand against both engines; CI cannot fetch it.
"""

from __future__ import annotations

import asyncio
import contextlib

import msgpack
import numpy as np
import pytest
import websockets

from tests.stt_client import audio_msg, connect, speechlike

pytestmark = pytest.mark.moshi


async def send_like_dsm_file_client(url: str, key: str, pcm: np.ndarray) -> list[dict]:
    received: list[dict] = []
    async with connect(url, key) as ws:

        async def sender() -> None:
            await ws.send(audio_msg(np.zeros(24000, np.float32)))
            for start in range(0, len(pcm), 1920):
                await ws.send(audio_msg(pcm[start : start + 1920]))
            for _ in range(5):
                await ws.send(audio_msg(np.zeros(24000, np.float32)))
            await ws.send(msgpack.packb({"type": "Marker", "id": 0}, use_single_float=True))
            for _ in range(35):
                await ws.send(audio_msg(np.zeros(24000, np.float32)))

        send_task = asyncio.create_task(sender())
        async for raw in ws:
            msg = msgpack.unpackb(raw)
            received.append(msg)
            if msg["type"] == "Marker":
                break
        send_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
            await send_task
    return received


async def test_dsm_file_client_sequence(moshi_stt):
    received = await send_like_dsm_file_client(moshi_stt.ws, moshi_stt.api_key, speechlike(3.0))
    types = [m["type"] for m in received]
    assert types[0] == "Ready" and types[-1] == "Marker" and received[-1]["id"] == 0
    assert "Word" in types and "Step" in types
    # Words the script prints: the 1 s of leading silence shifts every time by 1 s.
    assert all(m["start_time"] >= 0 for m in received if m["type"] == "Word")
    # The service is still healthy for the next client after that abrupt close.
    again = await send_like_dsm_file_client(moshi_stt.ws, moshi_stt.api_key, speechlike(1.0))
    assert again[-1]["type"] == "Marker"


async def test_unmute_client_expectations(moshi_stt):
    """unmute validates every message with strict pydantic models and needs Steps to keep time."""
    allowed = {
        "Ready": set(),
        "Word": {"text", "start_time"},
        "EndWord": {"stop_time"},
        "Step": {"step_idx", "prs", "buffered_pcm"},
        "Marker": {"id"},
    }
    async with connect(moshi_stt.ws, moshi_stt.api_key) as ws:
        assert msgpack.unpackb(await ws.recv()) == {"type": "Ready"}
        chunk = speechlike(2.0)
        for i in range(0, len(chunk), 1234):  # arbitrary chunk sizes, as unmute sends
            await ws.send(audio_msg(chunk[i : i + 1234]))
        steps = 0
        while steps < 20:
            msg = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 30))
            assert set(msg) - {"type"} == allowed[msg["type"]]
            steps += msg["type"] == "Step"
