"""Malformed and oversized TTS input on the CPU engines: each gets a clear answer and the
stream (and its neighbours) go on; a long text never holds the other streams up.

What passes through the engine runs on Piper (the CPU default) and espeak-ng; what the
session or the HTTP edge answers alone runs on espeak-ng, the cheaper (text that only Piper
finds hard is in test_piper.py)."""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx
import msgpack
import pytest
import websockets

from devkit.processes import start_service
from tests.fakes.faulty_tts import TRIGGER
from tests.step_failure import assert_fails_loudly
from tests.tts_client import EOS, TtsRun, connect, read_all, speak, text_msg

pytestmark = pytest.mark.lite

# About 4000 characters (the per-stream limit) of plain sentences.
LONG_TEXT = ("The rain in Spain stays mainly in the plain, and nobody minds at all. " * 57)[:3990]


@pytest.fixture(params=["piper", "espeak"])
def cpu_tts(request: pytest.FixtureRequest):
    """The service on each CPU engine."""
    return request.getfixturevalue(f"{request.param}_tts")


def voice_msg(embeddings: list, shape: list) -> bytes:
    return msgpack.packb({"type": "Voice", "embeddings": embeddings, "shape": shape})


@pytest.mark.parametrize(
    ("embeddings", "shape", "reason"),
    [
        ([0.1] * 6, [1, -2, -3], "shape.1: Input should be greater than 0"),  # fault 8: reshape raised
        ([], [1, 0, 5], "shape.1: Input should be greater than 0"),
        ([0.1] * 6, [1, 2, 3, 1], "shape: Tuple should have at most 3 items"),
        ([0.1] * 6, [2, 1, 3], "shape.0: Input should be 1"),
        ([0.1] * 5, [1, 2, 3], "shape [1, 2, 3] needs 6 values, got 5"),
        ([], [1, 2**32, 2**32], "needs 18446744073709551616 values, got 0"),  # int64 product wraps to 0
        ([0.1, float("nan")], [1, 1, 2], "embeddings.1: Input should be a finite number"),
        ([0.1, 1e39], [1, 1, 2], "embeddings.1: Input should be less than or equal to"),  # inf as float32
        (["a", 0.1], [1, 1, 2], "embeddings.0: Input should be a valid number"),
        ([0.1] * 6, "123", "shape: Input should be a valid"),
        ([0.1] * 6, [1, 2, 3], "engine takes no voice embeddings"),
    ],
)
async def test_bad_voice_gets_an_error_and_the_stream_goes_on(cpu_tts, embeddings, shape, reason):
    run = TtsRun()
    async with connect(cpu_tts.ws, cpu_tts.api_key) as ws:
        run.messages.append(msgpack.unpackb(await ws.recv()))
        await ws.send(voice_msg(embeddings, shape))
        error = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 10))
        for word in ["hello", "there."]:
            await ws.send(text_msg(word))
        await ws.send(EOS)
        await read_all(ws, run, 30)
    assert error["type"] == "Error" and reason in error["message"], error
    assert run.close_code == 1000 and run.of("Error") == []
    assert [w for w, _, _ in run.words] == ["hello", "there."]


async def test_text_frames_get_the_checks_of_text_messages(espeak_tts):
    run = TtsRun()
    async with connect(espeak_tts.ws, espeak_tts.api_key) as ws:
        run.messages.append(msgpack.unpackb(await ws.recv()))
        await ws.send("x" * 4097)
        error = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 10))
        await ws.send("hello")  # moshi-server reads a text frame as Text
        await ws.send(EOS)
        await read_all(ws, run, 30)
    assert "invalid Text message: text: String should have at most 4096 characters" in error["message"]
    assert run.close_code == 1000 and [w for w, _, _ in run.words] == ["hello"]


async def test_text_that_is_not_utf8_gets_an_error_and_the_stream_goes_on(espeak_tts):
    """A Text whose msgpack string holds a surrogate (UTF-8 cannot) is refused; a text frame
    cannot hold one at all (1007: tests/edges/test_connection_edges.py)."""
    run = TtsRun()
    async with connect(espeak_tts.ws, espeak_tts.api_key) as ws:
        run.messages.append(msgpack.unpackb(await ws.recv()))
        await ws.send(msgpack.packb({"type": "Text", "text": "bad \ud800"}, unicode_errors="surrogatepass"))
        error = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 10))
        await ws.send(text_msg("hello there."))
        await ws.send(EOS)
        await read_all(ws, run, 30)
    assert (
        error["type"] == "Error" and "not a msgpack message: 'utf-8' codec can't decode" in error["message"]
    )
    assert run.close_code == 1000 and [w for w, _, _ in run.words] == ["hello", "there."]


async def test_overlong_voice_name_is_refused_before_upgrade(espeak_tts):
    with pytest.raises(websockets.InvalidStatus) as info:
        async with connect(espeak_tts.ws, espeak_tts.api_key, voice="v" * 300):
            pass
    assert info.value.response.status_code == 400
    assert "voice: String should have at most 256 characters" in info.value.response.body.decode()


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ('{"text": "(( ))"}', 400, "text has no words to speak"),
        ('{"text": 42}', 422, "text"),
        ('{"text": "hi", "voice": "%s"}' % ("v" * 300), 422, "voice"),
        ('{"text": "hi", "voice": ["en-us"]}', 422, "voice"),
        ('{"text": "hi", "cfg_alpha": NaN}', 422, "cfg_alpha"),
        ('{"text": "hi", "cfg_alpha": 1e999}', 422, "cfg_alpha"),
        ('{"text": "hi", "cfg_alpha": %s}' % ("9" * 5000), 400, "error parsing the body"),
        ("[" * 50_000, 400, "error parsing the body"),
        # A lone surrogate: used to answer 200 with no audio, the good words lost with it.
        (
            '{"text": "Hello there \\ud800 my friend."}',
            400,
            "text cannot be encoded as UTF-8: body.text holds a lone surrogate ('\\\\ud800') at character 12",
        ),
        ('{"text": "Hello", "voice": "\\udc00"}', 400, "body.voice holds a lone surrogate"),
    ],
)
async def test_synthesize_rejects_bad_bodies(espeak_tts, body, status, reason):
    async with httpx.AsyncClient(base_url=espeak_tts.http) as client:
        response = await client.post(
            "/synthesize",
            content=body,
            headers={"kyutai-api-key": espeak_tts.api_key, "content-type": "application/json"},
        )
    assert response.status_code == status
    assert reason in response.text


def test_long_text_is_spoken_in_bounded_slices():
    """Fault 10: a 4000-character Text was synthesised in one step, stalling every slot."""
    from services.tts.engines.base import SlotInput, StreamStart
    from services.tts.engines.espeak_engine import PHRASE_CHARS, PHRASE_WORDS, EspeakTtsEngine
    from services.tts.text import split_words

    engine = EspeakTtsEngine(2)
    result = engine.step(
        [
            SlotInput(0, StreamStart("en-us"), split_words(LONG_TEXT), eos=True),
            SlotInput(1, StreamStart("en-gb"), split_words("one two three. four five six."), eos=True),
        ]
    )
    per_step: dict[int, list[list[str]]] = {0: [], 1: []}
    finished: dict[int, int] = {}
    for step in range(1000):
        for slot, out in result.outputs.items():
            per_step[slot].append([w.text for w in out.words])
            if out.done:
                finished[slot] = step
        if len(finished) == 2:
            break
        result = engine.step([])
    assert finished[1] <= 3 < finished[0]  # the short stream is not queued behind the long one
    assert [w for words in per_step[0] for w in words] == LONG_TEXT.split()
    for words in per_step[0]:
        assert len(words) <= PHRASE_WORDS and (len(words) <= 1 or len(" ".join(words)) <= PHRASE_CHARS)


async def test_long_texts_do_not_hold_up_a_short_one(cpu_tts):
    """Three 4000-character texts at once stalled every other stream by over 2 s. Now a short
    text sent just after them is spoken while the long ones still are (it is never queued
    behind them), and their clients leaving mid-text frees their slots."""
    async with httpx.AsyncClient(base_url=cpu_tts.http) as client:
        idle_slots = (await client.get("/ready")).json()["free_slots"]
    started = asyncio.Event()
    neighbour_done = asyncio.Event()

    async def long_stream() -> TtsRun:
        run = TtsRun()
        async with connect(cpu_tts.ws, cpu_tts.api_key) as ws:
            run.messages.append(msgpack.unpackb(await ws.recv()))
            await started.wait()
            await ws.send(text_msg(LONG_TEXT))
            await ws.send(EOS)
            while not neighbour_done.is_set():
                try:
                    run.messages.append(msgpack.unpackb(await asyncio.wait_for(ws.recv(), 0.2)))
                except TimeoutError:
                    continue
        return run  # the client leaves mid-text

    async def short_stream() -> TtsRun:
        run = TtsRun()
        async with connect(cpu_tts.ws, cpu_tts.api_key) as ws:
            run.messages.append(msgpack.unpackb(await ws.recv()))
            started.set()
            await asyncio.sleep(0.05)  # the long texts go first
            await ws.send(text_msg("one two three four five six seven eight nine ten."))
            await ws.send(EOS)
            await read_all(ws, run, 60)
        neighbour_done.set()
        return run

    *longs, short = await asyncio.gather(long_stream(), long_stream(), long_stream(), short_stream())
    assert short.close_code == 1000 and short.of("Error") == [] and len(short.words) == 10
    for run in longs:  # still speaking, with most of their words to go
        assert run.of("Audio") and run.of("Error") == []
        assert len(run.of("Text")) < len(LONG_TEXT.split()) / 2
    async with httpx.AsyncClient(base_url=cpu_tts.http) as client:
        deadline = time.monotonic() + 30
        while (await client.get("/ready")).json().get("free_slots") != idle_slots:
            assert time.monotonic() < deadline, "the long streams' slots were not freed"
            await asyncio.sleep(0.1)


async def test_a_message_flood_is_closed_with_1008(espeak_tts):
    """A sender of invalid frames faster than MAX_MESSAGES_PER_SECOND used to be slowed by not
    reading its socket, so its keepalive pings went unanswered (1011 after the timeout); now
    the socket is always read, and the flood ends with one Error and a 1008 close."""
    errors: list[str] = []
    async with connect(espeak_tts.ws, espeak_tts.api_key) as ws:
        assert msgpack.unpackb(await ws.recv())["type"] == "Ready"

        async def read() -> None:
            with contextlib.suppress(websockets.ConnectionClosed):
                async for raw in ws:
                    message = msgpack.unpackb(raw)
                    if message["type"] == "Error":
                        errors.append(message["message"])

        reader = asyncio.create_task(read())
        with contextlib.suppress(websockets.ConnectionClosed):
            for _ in range(5000):
                await ws.send(b"\xc1 not msgpack")
                await asyncio.sleep(0)  # a client that reads while it sends
        await reader
    assert ws.close_code == 1008
    assert "messages per second" in errors[-1]
    assert all("not a msgpack message" in e for e in errors[:-1])


async def test_kyutai_tts_script_sends_a_long_text_word_by_word_at_once(espeak_tts):
    """tts_rust_server.py sends one `Text` per word of its whole input, unpaced, then `Eos`, and
    reads until the server closes: 800 words at once must not trip the message budget (Text
    with words spends the character budget instead), and the stream ends with 1000."""
    words = LONG_TEXT.split()
    assert len(words) > 400  # over the burst of MAX_MESSAGES_PER_SECOND (400), if they counted
    run = await speak(espeak_tts.ws, espeak_tts.api_key, LONG_TEXT)
    assert run.close_code == 1000 and run.of("Error") == []
    assert [w for w, _, _ in run.words] == words


@pytest.mark.parametrize("engine", ["piper", "espeak"])
async def test_a_failing_step_ends_every_stream_turns_ready_503_and_exits_non_zero(api_key, tmp_path, engine):
    """The step loop the STT uses (services/common/steploop.py), on the TTS: a step that raises
    as a whole, not in one stream, takes every stream and the service down, loudly."""
    args = ["--engine", engine, "--batch-size", "3"]
    with start_service("tests.fakes.faulty_tts", args, api_key, tmp_path) as service:
        async with connect(service.ws, api_key) as bystander, connect(service.ws, api_key) as culprit:
            for ws in (bystander, culprit):
                assert msgpack.unpackb(await ws.recv())["type"] == "Ready"
            await bystander.send(text_msg("Hello there, this sentence keeps the bystander speaking."))
            while msgpack.unpackb(await asyncio.wait_for(bystander.recv(), 30))["type"] != "Audio":
                pass

            async def trigger() -> None:
                await culprit.send(text_msg(f"{TRIGGER} "))

            await assert_fails_loudly(service, [bystander, culprit], "tts", trigger)
