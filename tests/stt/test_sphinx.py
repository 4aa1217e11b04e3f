"""The pocketsphinx lite engine speaks the same protocol and recognises a real phrase."""

from __future__ import annotations

import httpx
import pytest
import soundfile

from services.common.audio import SAMPLE_RATE, resample
from tests.conftest import FIXTURES
from tests.stt_client import transcribe_stream

pytestmark = pytest.mark.lite

PHRASE = FIXTURES / "weather_16k.wav"
# pocketsphinx on a synthetic voice gets only some words right (see fixtures/README.md);
# at least one of the phrase's content words must come through.
EXPECTED = {"weather", "nice", "today", "one", "two", "three"}


async def test_spoken_phrase_over_websocket(sphinx_stt):
    pcm, rate = soundfile.read(PHRASE, dtype="float32")
    run = await transcribe_stream(
        sphinx_stt.ws, sphinx_stt.api_key, resample(pcm, rate, SAMPLE_RATE), chunk=4000
    )
    assert run.types[0] == "Ready" and run.types[-1] == "Marker"
    words = [w.lower() for w, _ in run.words]
    assert EXPECTED & set(words), words
    steps = run.of("Step")
    assert steps and {len(s["prs"]) for s in steps} == {4}
    # After the phrase the endpointer sees the flush silence: the pause estimate rises.
    assert steps[-1]["prs"][0] > 0.5
    starts = [t for _, t in run.words]
    assert starts == sorted(starts) and 0.0 <= starts[0] < len(pcm) / rate


async def test_transcribe_a_wav_at_its_own_rate(sphinx_stt):
    async with httpx.AsyncClient(base_url=sphinx_stt.http, timeout=60) as client:
        response = await client.post(
            "/v1/transcribe", content=PHRASE.read_bytes(), headers={"kyutai-api-key": sphinx_stt.api_key}
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert EXPECTED & set(body["text"].lower().split()), body["text"]
    assert all(w["stop"] is None or w["stop"] >= w["start"] for w in body["words"])
