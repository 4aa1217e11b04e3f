"""The moshi-server wire protocol, end to end against the service on the tiny moshi model."""

from __future__ import annotations

import asyncio
import json
import math

import httpx
import msgpack
import numpy as np
import pytest
import websockets

from tests.stt_client import FRAME, audio_msg, connect, marker_msg, speechlike, transcribe_stream

pytestmark = pytest.mark.moshi

DELAY_S = 0.5  # the tiny model's stt_config.audio_delay_seconds
DELAY_FRAMES = math.ceil(DELAY_S * 12.5)


async def test_ready_steps_words_and_marker_in_order(moshi_stt):
    audio = speechlike(4.0)
    run = await transcribe_stream(moshi_stt.ws, moshi_stt.api_key, audio, chunk=1000)

    assert run.types[0] == "Ready"
    assert run.types[-1] == "Marker" and run.messages[-1]["id"] == 7
    steps = run.of("Step")
    # One Step per frame of the client's audio (the last one padded), none for the flush's
    # silence (the model delay, pushed through after the Marker).
    assert len(steps) == math.ceil(len(audio) / FRAME)
    assert {len(s["prs"]) for s in steps} == {4}
    assert all(0.0 <= p <= 1.0 for s in steps for p in s["prs"])
    assert [s["step_idx"] for s in steps] == sorted(s["step_idx"] for s in steps)

    # Words exist, have times on the client's timeline, and none precedes the model delay.
    assert run.of("Word"), "the tiny model emits words on tonal input"
    first_word = run.types.index("Word")
    steps_before = run.types[:first_word].count("Step")
    assert steps_before >= DELAY_FRAMES
    for word in run.of("Word"):
        assert isinstance(word["text"], str) and word["text"]
        assert 0.0 <= word["start_time"] <= len(audio) / 24000 + DELAY_S
    for end in run.of("EndWord"):
        assert 0.0 <= end["stop_time"] <= len(audio) / 24000 + DELAY_S


async def test_marker_waits_for_audio_before_it(moshi_stt):
    audio = speechlike(2.0, seed=3)
    async with connect(moshi_stt.ws, moshi_stt.api_key) as ws:
        assert msgpack.unpackb(await ws.recv())["type"] == "Ready"
        await ws.send(audio_msg(audio))
        await ws.send(marker_msg(1))
        await ws.send(audio_msg(audio))  # more audio after the marker must not delay it
        types, steps_at_marker = [], None
        while True:
            msg = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 30))
            types.append(msg["type"])
            if msg["type"] == "Marker":
                steps_at_marker = types.count("Step")
                break
    # Echoed after the audio before it and the model delay's silence (which sends no Step),
    # before any Step of the audio after it.
    assert steps_at_marker == math.ceil(len(audio) / FRAME)


async def test_wire_encoding_matches_moshi_server(moshi_stt):
    """Step.prs are float32 and Word times float64, as rmp_serde writes them; `type` comes first."""
    async with connect(moshi_stt.ws, moshi_stt.api_key) as ws:
        raw_ready = await ws.recv()
        assert raw_ready == bytes.fromhex("81a474797065a55265616479")
        await ws.send(audio_msg(np.zeros(FRAME * 3, dtype=np.float32)))
        raw = await asyncio.wait_for(ws.recv(), 30)
    assert next(iter(msgpack.unpackb(raw))) == "type"
    assert b"\xca" in raw and b"\xcb" not in raw  # float32 prs, no float64


async def test_build_info_health_ready_metrics(moshi_stt):
    async with httpx.AsyncClient(base_url=moshi_stt.http) as client:
        assert (await client.get("/api/build_info")).status_code == 200
        assert (await client.get("/health")).json()["status"] == "ok"
        assert (await client.get("/ready")).json()["status"] == "ready"
        metrics = (await client.get("/metrics")).text
    assert "asr_model_step_duration" in metrics and "asr_open_channels" in metrics


async def test_transcribe_endpoint(moshi_stt, tmp_path):
    import soundfile

    wav = tmp_path / "in.wav"
    soundfile.write(wav, speechlike(3.0)[::3], 8000)  # 8 kHz on purpose: it is resampled
    async with httpx.AsyncClient(base_url=moshi_stt.http, timeout=60) as client:
        denied = await client.post("/v1/transcribe", content=wav.read_bytes())
        ok = await client.post(
            "/v1/transcribe", content=wav.read_bytes(), headers={"kyutai-api-key": moshi_stt.api_key}
        )
        bad = await client.post(
            "/v1/transcribe", content=b"not audio at all", headers={"kyutai-api-key": moshi_stt.api_key}
        )
    assert denied.status_code == 401
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["duration_s"] == pytest.approx(3.0, abs=0.01)
    assert body["words"] and all(w["start"] >= 0 for w in body["words"])
    assert bad.status_code == 415 and "not a readable audio file" in bad.json()["detail"]


async def test_wrong_or_missing_key_is_refused_before_upgrade(moshi_stt):
    for key in (None, "wrong-key"):
        with pytest.raises(websockets.InvalidStatus) as info:
            async with connect(moshi_stt.ws, key):
                pass
        assert info.value.response.status_code == 401
    # moshi-server's fallback: the key as ?auth_id= when no header is sent.
    async with websockets.connect(f"{moshi_stt.ws}/api/asr-streaming?auth_id={moshi_stt.api_key}") as ws:
        assert msgpack.unpackb(await ws.recv())["type"] == "Ready"


def test_keys_never_reach_the_log(moshi_stt):
    log = moshi_stt.log_text()
    assert moshi_stt.api_key not in log
    json.loads(log.strip().splitlines()[0])  # structured: one JSON object per line
