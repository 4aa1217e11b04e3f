"""The espeak-ng lite engine: same protocol, plausible audio, and words a recogniser can hear."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
import soundfile

from services.tts.text import split_words
from tests.phrase import heard_the_phrase
from tests.tts_client import longest_silence_s, speak

pytestmark = pytest.mark.lite

SENTENCE = "The weather is nice today. One two three."


async def test_sentence_audio_duration_and_word_times(espeak_tts):
    run = await speak(espeak_tts.ws, espeak_tts.api_key, SENTENCE)
    assert run.messages[0] == {"type": "Ready"} and run.close_code == 1000
    assert {len(m["pcm"]) for m in run.of("Audio")} == {1920}
    seconds = len(run.pcm) / 24000
    words = len(SENTENCE.split())
    # Speech runs at 2 to 5 words per second; espeak-ng's default is about 175 words a minute.
    assert words / 5 <= seconds <= words / 2 + 1
    times = run.words
    assert [w for w, _, _ in times] == SENTENCE.split()
    assert all(a <= b for _, a, b in times) and times[-1][2] <= seconds + 0.08


async def test_break_tag_adds_silence(espeak_tts):
    """The tag in one `Text` (split across messages, as words, it is only text)."""
    plain = await speak(espeak_tts.ws, espeak_tts.api_key, "one two")
    paused = await speak(espeak_tts.ws, espeak_tts.api_key, 'one <break time="1s"/> two', whole=True)
    assert len(paused.pcm) - len(plain.pcm) >= 0.9 * 24000
    assert longest_silence_s(plain.pcm) < 0.9 <= longest_silence_s(paused.pcm)
    assert [w for w, _, _ in paused.words] == ["one", "two"]
    assert len(split_words('one <break time="1s"/> two')) == 3


async def test_whisper_hears_what_espeak_says(espeak_tts, whisper_stt):
    """In the fixture's voice: Whisper tiny.en hears espeak-ng's default voice say "But whenever
    is ice today?" (devkit/fixtures/README.md)."""
    async with httpx.AsyncClient(timeout=60) as client:
        audio = (
            await client.post(
                f"{espeak_tts.http}/synthesize",
                json={"text": SENTENCE, "voice": "en-us+f3"},
                headers={"kyutai-api-key": espeak_tts.api_key},
            )
        ).content
        wav = io.BytesIO()
        soundfile.write(wav, np.frombuffer(audio, "<f4"), 24000, format="WAV")
        heard = (
            await client.post(
                f"{whisper_stt.http}/v1/transcribe",
                content=wav.getvalue(),
                headers={"kyutai-api-key": whisper_stt.api_key},
            )
        ).json()
    assert heard_the_phrase(heard["text"]), heard
