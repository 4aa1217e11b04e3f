"""Faults found by driving the STT from outside (issue 13): a step or a decode that fails, noise
that decodes to nothing, a Marker flood, and a fast file sender whose keepalive must get through."""

from __future__ import annotations

import asyncio
import contextlib
import time

import msgpack
import numpy as np
import psutil
import pytest
import soundfile
import websockets

from devkit.processes import start_service
from devkit.wer import normalise
from kit.audio import SAMPLE_RATE, resample
from tests.fakes.faulty_stt import TRIGGER
from tests.step_failure import assert_fails_loudly
from tests.stt.test_whisper import EXPECTED, PHRASE, phrase_24k, recorded_24k
from tests.stt_client import FRAME, audio_msg, connect, marker_msg, speechlike, transcribe_stream

pytestmark = pytest.mark.lite


async def _recv(ws, wait_s: float = 30.0) -> dict:
    return msgpack.unpackb(await asyncio.wait_for(ws.recv(), wait_s))


class StepWatch:
    """A healthy stream paced in real time beside the test; records when each Step arrived."""

    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url, key
        self.times: list[float] = []
        self._stop = asyncio.Event()

    async def run(self) -> None:
        audio = speechlike(3.0, seed=5)
        async with connect(self.url, self.key) as ws:
            assert (await _recv(ws))["type"] == "Ready"

            async def send() -> None:
                i = 0
                while not self._stop.is_set():
                    await ws.send(audio_msg(audio[i % len(audio) : i % len(audio) + FRAME]))
                    i += FRAME
                    await asyncio.sleep(FRAME / 24000)

            sender = asyncio.create_task(send())
            try:
                while not self._stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        if (await _recv(ws, 0.2))["type"] == "Step":
                            self.times.append(time.monotonic())
            finally:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sender

    def stop(self) -> None:
        self._stop.set()

    def largest_gap(self) -> float:
        assert len(self.times) > 10, "the healthy stream got (almost) no Steps"
        return max(np.diff(self.times))


def square_noise(seconds: float) -> np.ndarray:
    """The fuzzer's input: +-1.0 square-wave noise (random sign held for a few samples)."""
    rng = np.random.default_rng(13)
    blocks = np.where(rng.random(int(seconds * 24000) // 8 + 1) < 0.5, -1.0, 1.0)
    return np.repeat(blocks, 8)[: int(seconds * 24000)].astype(np.float32)


async def test_full_scale_noise_is_transcribed_to_nothing_and_the_service_goes_on(whisper_stt):
    url, key = whisper_stt.ws, whisper_stt.api_key
    noise, beside = await asyncio.gather(
        transcribe_stream(url, key, square_noise(14.4), chunk=24000),
        transcribe_stream(url, key, phrase_24k(), chunk=4000, pace_s=0.05),
    )
    assert noise.types[0] == "Ready" and noise.types[-1] == "Marker"
    assert noise.words == []
    # The stream beside it, decoded in the same batches, is heard as if alone.
    assert set(normalise(" ".join(w for w, _ in beside.words))) >= EXPECTED, beside.words
    # The next stream takes the same slot (and VAD): it must not inherit the noise.
    pcm, rate = soundfile.read(PHRASE, dtype="float32")
    later = await transcribe_stream(url, key, resample(pcm, rate, SAMPLE_RATE), chunk=4000)
    assert later.of("Step") and later.types[-1] == "Marker"
    assert set(normalise(" ".join(w for w, _ in later.words))) >= EXPECTED, later.words


async def test_marker_flood_keeps_memory_bounded_and_the_neighbour_flowing(whisper_stt):
    url, key = whisper_stt.ws, whisper_stt.api_key
    service = psutil.Process(whisper_stt.process.pid)
    watch = StepWatch(url, key)
    watcher = asyncio.create_task(watch.run())
    await asyncio.sleep(1.0)
    rss_before = service.memory_info().rss
    echoed: list[int] = []
    errors: list[str] = []
    async with connect(url, key) as ws:
        assert (await _recv(ws))["type"] == "Ready"
        await ws.send(audio_msg(np.zeros(FRAME // 2, np.float32)))

        async def flood() -> None:
            with contextlib.suppress(websockets.ConnectionClosed):
                for i in range(2000):
                    await ws.send(marker_msg(i))
                    await asyncio.sleep(0)  # a client that reads while it sends

        async def read() -> None:
            with contextlib.suppress(websockets.ConnectionClosed):
                while True:
                    msg = await _recv(ws)
                    if msg["type"] == "Marker":
                        echoed.append(msg["id"])
                    elif msg["type"] == "Error":
                        errors.append(msg["message"])

        await asyncio.gather(flood(), read())
    rss_after = service.memory_info().rss
    watch.stop()
    await watcher
    # Each marker used to queue the model delay in silence (69 kB on the old CPU engine): 2000 -> 138 MB.
    assert rss_after - rss_before < 40e6, (rss_before, rss_after)
    # Markers come back in order until the flood breaks the message budget: then one Error
    # says why, and the stream is closed with 1008 (policy violation).
    assert echoed == sorted(echoed) and echoed
    assert ws.close_code == 1008
    assert "messages per second" in errors[-1]
    assert all("Markers are already waiting" in m for m in errors[:-1])
    assert watch.largest_gap() < 1.0


async def test_a_fast_file_sender_keeps_its_keepalive(api_key, tmp_path):
    """Kyutai's stt_from_file_rust_server.py --rtf 1000 against a model 4x faster than real time:
    a ping sent behind the whole file is answered once the server has read the file, not once the
    model has worked through it (which is when a starved keepalive times out).

    Asserted by order, not by a clock: the pong must come while at least 3/4 of the Steps are still
    to come. Reads that waited for the model past the old 60 s read-ahead would hold it until the
    model had done 46 s of the 106 s, 43% of the Steps. A stall of the whole machine delays the
    pong and the Steps alike."""
    pcm = np.concatenate([speechlike(10.0, seed=9), np.zeros(90 * 24000, np.float32)])
    total_steps = (len(pcm) + 6 * 24000) // FRAME
    args = ["--batch-size", "2", "--step-delay-s", "0.02"]
    received: list[dict] = []
    with start_service("tests.fakes.faulty_stt", args, api_key, tmp_path) as service:
        async with websockets.connect(
            f"{service.ws}/api/asr-streaming",
            additional_headers={"kyutai-api-key": api_key},
            ping_interval=None,
        ) as ws:
            steps_at_pong: list[int] = []

            async def send() -> None:
                await ws.send(audio_msg(np.zeros(24000, np.float32)))
                for start in range(0, len(pcm), FRAME):
                    await ws.send(audio_msg(pcm[start : start + FRAME]))
                for _ in range(5):
                    await ws.send(audio_msg(np.zeros(24000, np.float32)))
                await ws.send(msgpack.packb({"type": "Marker", "id": 0}, use_single_float=True))
                pong = await ws.ping()
                pong.add_done_callback(lambda _: steps_at_pong.append(len(received)))

            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(send())
                async for raw in ws:
                    received.append(msgpack.unpackb(raw))
                    if received[-1]["type"] == "Marker":
                        break
    assert received[-1] == {"type": "Marker", "id": 0}
    steps = [m for m in received if m["type"] == "Step"]
    assert len(steps) >= total_steps
    assert steps_at_pong and steps_at_pong[0] < total_steps // 4, (steps_at_pong, total_steps)


async def test_a_failing_step_ends_every_stream_turns_ready_503_and_exits_non_zero(api_key, tmp_path):
    args = ["--batch-size", "3"]
    with start_service("tests.fakes.faulty_stt", args, api_key, tmp_path) as service:
        clients = [connect(service.ws, api_key) for _ in range(2)]
        async with clients[0] as bystander, clients[1] as culprit:
            for ws in (bystander, culprit):
                assert (await _recv(ws))["type"] == "Ready"
            await bystander.send(audio_msg(speechlike(0.5)))
            assert (await _recv(bystander))["type"] == "Step"

            async def trigger() -> None:
                await culprit.send(audio_msg(np.full(FRAME, TRIGGER, np.float32)))

            await assert_fails_loudly(service, [bystander, culprit], "stt", trigger)


async def test_a_failing_decode_ends_every_stream_turns_ready_503_and_exits_non_zero(api_key, tmp_path):
    """The decode runs in the engine's worker thread, beside the step loop: its failure must
    surface exactly as a failing step's does."""
    args = ["--batch-size", "3", "--decode-fault"]
    with start_service("tests.fakes.faulty_stt", args, api_key, tmp_path) as service:
        clients = [connect(service.ws, api_key) for _ in range(2)]
        async with clients[0] as bystander, clients[1] as culprit:
            for ws in (bystander, culprit):
                assert (await _recv(ws))["type"] == "Ready"
            await bystander.send(audio_msg(np.zeros(FRAME, np.float32)))
            assert (await _recv(bystander))["type"] == "Step"

            async def trigger() -> None:
                await culprit.send(audio_msg(recorded_24k("goforward.raw")))
                await culprit.send(marker_msg(1))

            await assert_fails_loudly(service, [bystander, culprit], "stt", trigger)
