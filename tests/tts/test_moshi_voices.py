"""Voices on the moshi engine (tiny model): aliases resolve to voices that load, a client's
embedding is checked when it arrives, and one stream's failure ends only itself."""

from __future__ import annotations

import asyncio
import logging

import httpx
import msgpack
import numpy as np
import pytest

from tests.tts_client import EOS, TtsRun, connect, read_all, speak, text_msg

pytestmark = pytest.mark.moshi

TEXT = "hello world, this is a test."


def _engine(tiny, batch: int):
    from services.tts.engines.moshi_engine import MoshiTtsEngine
    from services.tts.settings import TtsSettings

    settings = TtsSettings(
        model=str(tiny.tts_dir), voice_repo=str(tiny.voices_dir), voice="tiny/default.wav", batch_size=batch,
        temperature=0.0, device="cpu", dtype="float32", service_api_key="unused",
    )  # fmt: skip
    return MoshiTtsEngine(settings), settings


def _finish(engine, slot: int, first) -> tuple[list[str], bool]:
    words, done = [w.text for w in first.words], first.done
    for _ in range(500):
        if done:
            break
        out = engine.step([]).outputs.get(slot)
        if out is not None:
            words += [w.text for w in out.words]
            done = out.done
    return words, done


def test_aliases_fall_back_to_the_default_voice_where_missing(tiny, caplog):
    engine, settings = _engine(tiny, 1)
    with caplog.at_level(logging.WARNING):
        engine.use_aliases({**settings.moshi_voice_aliases, "other": "tiny/other.wav"})
    # The tiny voice repo has none of kyutai/tts-voices' voices: every OpenAI name falls back.
    fallback = dict.fromkeys(settings.moshi_voice_aliases, "tiny/default.wav")
    assert engine.aliases == {**fallback, "other": "tiny/other.wav"}
    (record,) = [r for r in caplog.records if "aliases" in r.__dict__]
    assert record.aliases == settings.moshi_voice_aliases
    assert engine.resolve_voice("other") == "tiny/other.wav"


def test_embedding_of_the_wrong_width_is_refused(tiny):
    from services.tts.engines.base import VoiceError

    engine, _ = _engine(tiny, 1)
    engine.check_embedding(np.zeros((1, engine.embedding_dim, 25), np.float32))
    with pytest.raises(VoiceError, match=rf"\[1, {engine.embedding_dim}, frames\], got \[1, 3, 2\]"):
        engine.check_embedding(np.zeros((1, 3, 2), np.float32))


def test_a_failing_stream_ends_alone(tiny, monkeypatch):
    from services.tts.engines.base import SlotInput, StreamStart
    from services.tts.text import split_words

    engine, _ = _engine(tiny, 4)
    real_entry = engine._entry

    def entry_or_fail(slot, word):
        if word.text == "boom":
            raise RuntimeError("tokenizer broke")
        return real_entry(slot, word)

    monkeypatch.setattr(engine, "_entry", entry_or_fail)
    words = split_words(TEXT)
    outputs = engine.step(
        [
            SlotInput(0, StreamStart(np.zeros((1, 3, 2), np.float32), 2.0), list(words), eos=True),
            SlotInput(1, StreamStart("nobody/unknown.wav", 2.0), list(words), eos=True),
            SlotInput(2, StreamStart("tiny/default.wav", 2.0), split_words("boom boom"), eos=True),
            SlotInput(3, StreamStart("tiny/other.wav", 2.0), list(words), eos=True),
        ]
    ).outputs
    assert outputs[0].done and "cannot use this voice" in (outputs[0].error or "")
    assert outputs[1].done and "unknown voice 'nobody/unknown.wav'" in (outputs[1].error or "")
    assert outputs[2].done and "tokenizer broke" in (outputs[2].error or "")
    assert _finish(engine, 3, outputs[3]) == ([w.text for w in words], True)


async def test_openai_voice_name_and_bad_embedding_over_the_wire(moshi_tts):
    async with httpx.AsyncClient(base_url=moshi_tts.http) as client:
        listing = (await client.get("/v1/voices")).json()
    assert listing["aliases"]["marin"] == "tiny/default.wav" and listing["variants"] == []
    reference = await speak(moshi_tts.ws, moshi_tts.api_key, TEXT)
    marin = await speak(moshi_tts.ws, moshi_tts.api_key, TEXT, voice="marin")
    assert marin.words == reference.words and marin.of("Error") == []

    run = TtsRun()
    async with connect(moshi_tts.ws, moshi_tts.api_key) as ws:
        run.messages.append(msgpack.unpackb(await ws.recv()))
        await ws.send(msgpack.packb({"type": "Voice", "embeddings": [0.5] * 6, "shape": [1, 3, 2]}))
        error = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 10))
        for word in TEXT.split():
            await ws.send(text_msg(word))
        await ws.send(EOS)
        await read_all(ws, run)
    assert "cannot use this Voice" in error["message"] and "got [1, 3, 2]" in error["message"]
    # The stream went on with its default voice.
    assert run.close_code == 1000 and run.words == reference.words
