"""Bad TTS input: each gets a clear answer, and a stream running beside it is not disturbed."""

from __future__ import annotations

import asyncio

import httpx
import msgpack
import numpy as np
import pytest
import websockets

from tests.tts_client import EOS, connect, speak, text_msg

pytestmark = pytest.mark.moshi

TEXT = "hello world, this is a test of the tiny speech models"


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ({"voice": "nobody/unknown.wav"}, "unknown voice 'nobody/unknown.wav'"),
        ({"cfg_alpha": "2.2"}, "cfg_alpha 2.2 not supported"),
        ({"cfg_alpha": "lots"}, "cfg_alpha"),
        ({"format": "OggOpus"}, "format"),
    ],
)
async def test_bad_query_is_refused_before_upgrade(moshi_tts, query, reason):
    with pytest.raises(websockets.InvalidStatus) as info:
        async with connect(moshi_tts.ws, moshi_tts.api_key, **query):
            pass
    assert info.value.response.status_code == 400
    assert reason in info.value.response.body.decode()


async def test_missing_or_wrong_key(moshi_tts):
    for key in (None, "nope"):
        with pytest.raises(websockets.InvalidStatus) as info:
            async with connect(moshi_tts.ws, key):
                pass
        assert info.value.response.status_code == 401
    async with httpx.AsyncClient(base_url=moshi_tts.http) as client:
        assert (await client.post("/synthesize", json={"text": "hi"})).status_code == 401


async def test_bad_messages_get_errors_and_the_neighbour_is_untouched(moshi_tts):
    url, key = moshi_tts.ws, moshi_tts.api_key
    reference = await speak(url, key, TEXT)

    async def misbehave() -> list[str]:
        errors = []
        async with connect(url, key) as ws:
            assert msgpack.unpackb(await ws.recv()) == {"type": "Ready"}
            for payload in (
                b"\xc1 not msgpack",
                msgpack.packb({"type": "Sing"}),
                msgpack.packb({"type": "Text", "text": 42}),
                text_msg("x" * 4001),
            ):
                await ws.send(payload)
                errors.append(msgpack.unpackb(await asyncio.wait_for(ws.recv(), 10))["message"])
            await ws.send(text_msg("one two three"))
            await ws.send(EOS)
            await ws.send(text_msg("too late"))
            async for raw in ws:
                msg = msgpack.unpackb(raw)
                if msg["type"] == "Error":
                    errors.append(msg["message"])
        return errors

    errors, beside = await asyncio.gather(misbehave(), speak(url, key, TEXT))
    assert "not a msgpack message" in errors[0]
    assert "unknown message type 'Sing'" in errors[1]
    assert "invalid Text message: text" in errors[2]
    assert "limit of 4000 characters" in errors[3]
    assert "Text after Eos" in errors[4]
    assert beside.words == reference.words
    np.testing.assert_allclose(beside.pcm, reference.pcm, atol=1e-6)


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"text": "   "}, 400, "text is empty"),
        ({"text": "a" * 4001}, 413, "limit is 4000"),
        ({"text": "hi", "voice": "nobody/unknown.wav"}, 400, "unknown voice"),
        ({"text": "hi", "cfg_alpha": 2.2}, 400, "cfg_alpha 2.2 not supported"),
        ({"voice": "tiny/default.wav"}, 422, "text"),
    ],
)
async def test_synthesize_rejects_bad_requests(moshi_tts, body, status, reason):
    async with httpx.AsyncClient(base_url=moshi_tts.http) as client:
        response = await client.post("/synthesize", json=body, headers={"kyutai-api-key": moshi_tts.api_key})
    assert response.status_code == status
    assert reason in response.text
