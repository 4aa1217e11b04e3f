"""TTS streaming over the moshi-server protocol, on the tiny moshi model."""

from __future__ import annotations

import asyncio

import httpx
import msgpack
import numpy as np
import pytest

from tests.tts_client import EOS, TtsRun, connect, read_all, speak, text_msg

pytestmark = pytest.mark.moshi

TWELVE_WORDS = [
    "hello",
    "world,",
    "this",
    "is",
    "a",
    "test",
    "of",
    "the",
    "tiny",
    "speech",
    "models",
    "good",
    "morning",
]


async def test_audio_flows_before_eos_and_stream_closes_after_it(moshi_tts):
    run = TtsRun()
    async with connect(moshi_tts.ws, moshi_tts.api_key) as ws:
        run.messages.append(msgpack.unpackb(await ws.recv()))
        for word in TWELVE_WORDS:
            await ws.send(text_msg(word))
        # Eos withheld: audio for the first words must still come.
        while not run.of("Audio"):
            run.messages.append(msgpack.unpackb(await asyncio.wait_for(ws.recv(), 60)))
        await ws.send(EOS)
        await read_all(ws, run)

    assert run.messages[0] == {"type": "Ready"}
    assert run.close_code == 1000
    frames = run.of("Audio")
    assert {len(f["pcm"]) for f in frames} == {1920}
    pcm = run.pcm
    assert np.isfinite(pcm).all() and np.abs(pcm).max() <= 1.0
    words = run.words
    assert [w for w, _, _ in words] == TWELVE_WORDS
    assert all(start <= stop for _, start, stop in words)
    assert [s for _, s, _ in words] == sorted(s for _, s, _ in words)
    # Audio covers the words it speaks (timestamps are on the output audio timeline).
    assert len(pcm) / 24000 >= words[-1][1]


async def test_raw_pcm_format_sends_only_audio(moshi_tts):
    async with connect(moshi_tts.ws, moshi_tts.api_key, format="Pcm") as ws:
        for word in ["one", "two", "three", "four"]:
            await ws.send(text_msg(word))
        await ws.send(b"\x00")  # moshi-server's binary Eos
        frames = [frame async for frame in ws]
    assert frames and all(isinstance(f, bytes) and len(f) == 1920 * 4 for f in frames)
    assert np.isfinite(np.frombuffer(b"".join(frames), "<f4")).all()


async def test_eos_before_any_text_ends_at_once(moshi_tts):
    async with connect(moshi_tts.ws, moshi_tts.api_key) as ws:
        assert msgpack.unpackb(await ws.recv()) == {"type": "Ready"}
        await ws.send(EOS)
        run = await read_all(ws, TtsRun(), wait_s=10)
    assert run.messages == [] and run.close_code == 1000


async def test_synthesize_streams_float32_in_chunks(moshi_tts):
    chunks = []
    async with (
        httpx.AsyncClient(base_url=moshi_tts.http, timeout=120) as client,
        client.stream(
            "POST",
            "/synthesize",
            json={"text": "hello world, this is a test of streaming synthesis.", "voice": "tiny/other.wav"},
            headers={"kyutai-api-key": moshi_tts.api_key},
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["x-sample-rate"] == "24000" and response.headers["x-audio-format"] == "f32le"
        async for chunk in response.aiter_raw():
            chunks.append(chunk)
    assert len(chunks) > 1
    pcm = np.frombuffer(b"".join(chunks), "<f4")
    assert pcm.size % 1920 == 0 and np.isfinite(pcm).all() and np.abs(pcm).max() <= 1.0


OPENAI_VOICES = (
    "alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse", "marin",
    "cedar",
)  # fmt: skip


async def test_voices_are_listed(moshi_tts):
    async with httpx.AsyncClient(base_url=moshi_tts.http) as client:
        body = (await client.get("/v1/voices")).json()
    assert body == {
        "engine": "moshi",
        "default": "tiny/default.wav",
        "voices": ["tiny/default.wav", "tiny/other.wav"],
        # kyutai/tts-voices' voices are not in the tiny repo: OpenAI's names use the default.
        "aliases": dict.fromkeys(OPENAI_VOICES, "tiny/default.wav"),
        "variants": [],
    }


async def test_capacity_error_and_slot_reuse(moshi_tts):
    url, key = moshi_tts.ws, moshi_tts.api_key
    reference = await speak(url, key, "one two three")
    holders = [await connect(url, key).__aenter__() for _ in range(4)]
    try:
        for ws in holders:
            assert msgpack.unpackb(await ws.recv()) == {"type": "Ready"}
        async with connect(url, key) as extra:
            assert msgpack.unpackb(await extra.recv()) == {"type": "Error", "message": "no free channels"}
            await asyncio.wait_for(extra.wait_closed(), 5)
        # A slot left mid-stream is stopped in the engine and serves the next client cleanly.
        await holders[0].send(text_msg("abandoned words here"))
    finally:
        for ws in holders:
            await ws.close()
    await asyncio.sleep(0.3)
    again = await speak(url, key, "one two three")
    assert again.words == reference.words
    np.testing.assert_allclose(again.pcm, reference.pcm, atol=1e-6)
