"""The whisper engine as a client meets it: the service over the moshi-server protocol and
`POST /v1/transcribe`, on the fixture phrase, recorded human speech and non-speech."""

from __future__ import annotations

import asyncio

import httpx
import msgpack
import numpy as np
import pytest
import soundfile

from bench.recorded_speech import clip
from bench.turn_corpus import click, cough
from devkit import PHRASE_WAV
from devkit.wer import normalise, word_errors
from kit.audio import FRAME_SIZE, SAMPLE_RATE, resample
from tests.stt_client import audio_msg, connect, marker_msg, transcribe_stream

pytestmark = pytest.mark.lite

PHRASE = PHRASE_WAV
PHRASE_TEXT = "the weather is nice today. one two three."
# The phrase's words Whisper tiny.en must hear (it may split "today" into "to day").
EXPECTED = {"weather", "nice", "one", "two", "three"}
GO_FORWARD = "goforward.raw"
HE_WAS_NOT = "librivox/sense_and_sensibility_01_austen_64kb-0880"
CARDS = "cards/005"


def phrase_24k() -> np.ndarray:
    pcm, rate = soundfile.read(PHRASE, dtype="float32")
    return resample(pcm, rate, SAMPLE_RATE)


def recorded_24k(name: str) -> np.ndarray:
    return resample(clip(name).audio, 16_000, SAMPLE_RATE)


def heard(run) -> list[str]:
    return normalise(" ".join(w for w, _ in run.words))


async def test_spoken_phrase_over_websocket(whisper_stt):
    pcm = phrase_24k()
    run = await transcribe_stream(whisper_stt.ws, whisper_stt.api_key, pcm, chunk=4000)
    assert run.types[0] == "Ready" and run.types[-1] == "Marker"
    assert set(heard(run)) >= EXPECTED, run.words
    steps = run.of("Step")
    # One Step per frame: the phrase, its padded last frame, and the flush's silence.
    assert len(steps) >= -(-pcm.size // FRAME_SIZE)
    assert {len(s["prs"]) for s in steps} == {4}
    assert steps[-1]["prs"][0] > 0.5  # the flush silence is a pause
    assert any(s["prs"][0] < 0.5 for s in steps)  # the speech was voiced
    starts = [t for _, t in run.words]
    assert starts == sorted(starts) and 0.0 <= starts[0] < pcm.size / SAMPLE_RATE
    # Every Word is closed by an EndWord no earlier than it started.
    timed = [m for m in run.messages if m["type"] in ("Word", "EndWord")]
    assert [m["type"] for m in timed] == ["Word", "EndWord"] * len(run.words)
    pairs = zip(timed[::2], timed[1::2], strict=True)
    assert all(end["stop_time"] >= word["start_time"] for word, end in pairs)


async def test_the_marker_comes_after_every_word_and_nothing_follows_it(whisper_stt):
    async with connect(whisper_stt.ws, whisper_stt.api_key) as ws:
        assert msgpack.unpackb(await ws.recv())["type"] == "Ready"
        await ws.send(audio_msg(phrase_24k()))
        await ws.send(marker_msg(1))
        await ws.send(marker_msg(2))  # no audio since the first: echoed right after it
        messages = []
        while not messages or messages[-1] != {"type": "Marker", "id": 2}:
            messages.append(msgpack.unpackb(await asyncio.wait_for(ws.recv(), 60)))
    kinds = [m["type"] for m in messages]
    first_marker = messages.index({"type": "Marker", "id": 1})
    assert "Word" in kinds[:first_marker]
    assert messages[first_marker + 1 :] == [{"type": "Marker", "id": 2}]


async def test_transcribe_a_wav_at_its_own_rate(whisper_stt):
    async with httpx.AsyncClient(base_url=whisper_stt.http, timeout=60) as client:
        response = await client.post(
            "/v1/transcribe", content=PHRASE.read_bytes(), headers={"kyutai-api-key": whisper_stt.api_key}
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(normalise(body["text"])) >= EXPECTED, body["text"]
    assert all(w["stop"] is not None and w["stop"] >= w["start"] for w in body["words"])


@pytest.mark.parametrize("name", [GO_FORWARD, HE_WAS_NOT])
async def test_recorded_human_speech_is_heard(whisper_stt, name):
    run = await transcribe_stream(whisper_stt.ws, whisper_stt.api_key, recorded_24k(name), chunk=4000)
    errors, words = word_errors(clip(name).text, " ".join(w for w, _ in run.words))
    assert errors <= 0.25 * words, (clip(name).text, run.words)


def white_noise(seconds: float) -> np.ndarray:
    return np.random.default_rng(7).normal(0, 0.1, int(seconds * SAMPLE_RATE)).astype(np.float32)


def with_silence(pcm: np.ndarray) -> np.ndarray:
    gap = np.zeros(SAMPLE_RATE // 2, np.float32)
    return np.concatenate([gap, pcm, gap])


async def test_silence_noise_a_click_and_a_cough_give_no_words(whisper_stt):
    rng = np.random.default_rng(3)
    sounds = {
        "silence": np.zeros(3 * SAMPLE_RATE, np.float32),
        "white noise": white_noise(3.0),
        "click": with_silence(click(rng)),
        "coughs": with_silence(np.concatenate([cough(rng), 0 * cough(rng), cough(rng)])),
    }
    runs = await asyncio.gather(
        *(transcribe_stream(whisper_stt.ws, whisper_stt.api_key, pcm, chunk=4000) for pcm in sounds.values())
    )
    for name, run in zip(sounds, runs, strict=True):
        assert run.types[0] == "Ready" and run.types[-1] == "Marker", name
        assert run.of("Step"), name
        assert run.words == [], (name, run.words)


async def test_concurrent_streams_each_get_their_own_words(whisper_stt):
    names = [GO_FORWARD, HE_WAS_NOT, CARDS]
    url, key = whisper_stt.ws, whisper_stt.api_key
    runs = await asyncio.gather(
        *(transcribe_stream(url, key, recorded_24k(n), chunk=FRAME_SIZE, pace_s=0.01) for n in names)
    )
    own = {n: set(normalise(clip(n).text)) for n in names}
    for name, run in zip(names, runs, strict=True):
        words = set(heard(run))
        others = set().union(*(own[n] for n in names if n != name)) - own[name]
        assert len(words & own[name]) >= 0.6 * len(own[name]), (name, run.words)
        assert not words & others, (name, run.words)


async def test_a_new_stream_never_gets_the_words_of_the_stream_before_it(whisper_stt):
    """A stream that leaves mid-decode hands its slot on; its late words must not follow."""
    async with connect(whisper_stt.ws, whisper_stt.api_key) as ws:
        assert msgpack.unpackb(await ws.recv())["type"] == "Ready"
        await ws.send(audio_msg(recorded_24k(HE_WAS_NOT)))
        await ws.send(marker_msg(1))
    # The service gives the lowest free slot first: the one just handed back.
    silence = np.zeros(2 * SAMPLE_RATE, np.float32)
    later = await transcribe_stream(whisper_stt.ws, whisper_stt.api_key, silence)
    assert later.types[-1] == "Marker" and later.words == []
