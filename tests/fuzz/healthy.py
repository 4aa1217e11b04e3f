"""A well-behaved client that runs beside the fuzz, in its own process.

    python -m tests.fuzz.healthy {stt,tts,realtime} URL KEY OUTFILE

It runs until its stdin closes, and writes one line per event to OUTFILE:
``beat T`` (progress: an STT `Step`; for TTS and Realtime audio, each 80 ms that the audio
received so far plays for, as a listener's playback would: an engine that sends a phrase's
audio in one burst is not stalled while that audio plays),
``segment T`` (progress is expected from now on), ``idle T`` (no progress is expected,
e.g. between two TTS streams), ``problem T TEXT`` (an `Error`, an abnormal close, a failed
reply). T is `time.monotonic()`, which every process on the machine shares. Being its own
process, it measures the service, not the fuzzing test's hold on the GIL.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TextIO

import msgpack
import numpy as np
import websockets

from devkit.realtime_client import speech
from tests.stt_client import FRAME, audio_msg, speechlike
from tests.tts_client import EOS, text_msg

PHRASES = ("The weather is nice today.", "One, two, three.", "Here is another sentence.")
PHRASE_PERIOD_S = 0.25
PHRASES_PER_STREAM = 24  # well under the TTS's per-stream character limit


class Journal:
    """The lines the parent reads back."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def write(self, kind: str, text: str = "") -> None:
        self.out.write(f"{kind} {time.monotonic():.6f} {text}".rstrip() + "\n")
        self.out.flush()

    def beat(self) -> None:
        self.write("beat")

    def segment(self) -> None:
        self.write("segment")

    def idle(self) -> None:
        self.write("idle")

    def problem(self, text: str) -> None:
        self.write("problem", text.replace("\n", " ")[:500])


def close_text(exc: websockets.ConnectionClosed) -> str:
    code = exc.rcvd.code if exc.rcvd else "none (1006)"
    return f"closed by the server, code {code}"


async def stt(url: str, key: str, log: Journal, stop: asyncio.Event) -> None:
    """Real-time audio, one 80 ms frame at a time; every `Step` is a beat."""
    pcm = speechlike(8.0, seed=3)
    async with websockets.connect(
        f"{url}/api/asr-streaming", additional_headers={"kyutai-api-key": key}, max_size=None
    ) as ws:
        first = msgpack.unpackb(await ws.recv())
        if first.get("type") != "Ready":
            log.problem(f"first message {first}")
            return

        async def receive() -> None:
            try:
                async for raw in ws:
                    msg = msgpack.unpackb(raw)
                    if msg["type"] == "Step":
                        log.beat()
                    elif msg["type"] == "Error":
                        log.problem(f"STT Error: {msg.get('message')}")
            except websockets.ConnectionClosed as exc:
                if not stop.is_set():
                    log.problem(close_text(exc))

        reader = asyncio.create_task(receive())
        log.segment()
        started, sent = time.monotonic(), 0
        while not stop.is_set() and not reader.done():
            start = (sent * FRAME) % (len(pcm) - FRAME)
            await ws.send(audio_msg(pcm[start : start + FRAME]))
            sent += 1
            # Paced on the clock, so a late wake-up is caught up rather than accumulated.
            await asyncio.sleep(max(0.0, started + sent * FRAME / 24000 - time.monotonic()))
        log.idle()
        await ws.close()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


class Playback:
    """A listener's playback of audio that arrives in bursts: one beat per 80 ms played, none
    while nothing is left to play (that is what a listener hears as a stall)."""

    TICK_S = FRAME / 24000

    def __init__(self, log: Journal) -> None:
        self.log = log
        self.queued_s = 0.0
        self._task: asyncio.Task[None] | None = None

    def add(self, seconds: float) -> None:
        self.queued_s += seconds

    async def _play(self) -> None:
        started, ticks = time.monotonic(), 0
        while True:
            ticks += 1
            # Paced on the clock, so a late wake-up is caught up rather than accumulated.
            await asyncio.sleep(max(0.0, started + ticks * self.TICK_S - time.monotonic()))
            if self.queued_s > 0:
                self.queued_s = max(0.0, self.queued_s - self.TICK_S)
                self.log.beat()

    def start(self) -> None:
        """Progress is expected from now on (the stream or reply has begun)."""
        self.queued_s = 0.0
        self.log.segment()
        self._task = asyncio.create_task(self._play())

    async def stop(self) -> None:
        """No progress is expected any more; what is left unplayed is dropped."""
        self.log.idle()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


async def tts(url: str, key: str, log: Journal, stop: asyncio.Event) -> None:
    """Streams of short phrases, one every 0.25 s, their audio played out as it comes."""
    headers = {"kyutai-api-key": key}
    while not stop.is_set():
        async with websockets.connect(
            f"{url}/api/tts_streaming?format=PcmMessagePack", additional_headers=headers
        ) as ws:
            first = msgpack.unpackb(await ws.recv())
            if first.get("type") != "Ready":
                log.problem(f"first message {first}")
                await asyncio.sleep(0.5)
                continue
            ended = asyncio.Event()
            playback = Playback(log)

            async def receive(ws=ws, ended=ended, playback=playback) -> None:
                try:
                    async for raw in ws:
                        msg = msgpack.unpackb(raw)
                        if msg["type"] == "Audio":
                            playback.add(len(msg["pcm"]) / 24000)
                        elif msg["type"] == "Error":
                            log.problem(f"TTS Error: {msg.get('message')}")
                except websockets.ConnectionClosed as exc:
                    log.problem(close_text(exc))
                else:
                    if not ended.is_set():
                        log.problem("the TTS closed the stream before Eos")
                ended.set()

            reader = asyncio.create_task(receive())
            playback.start()
            for n in range(PHRASES_PER_STREAM):
                if stop.is_set() or reader.done():
                    break
                await ws.send(text_msg(PHRASES[n % len(PHRASES)]))
                await asyncio.sleep(PHRASE_PERIOD_S)
            await playback.stop()
            ended.set()
            with contextlib.suppress(websockets.ConnectionClosed):
                await ws.send(EOS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reader, 30)


async def realtime(url: str, token: str, log: Journal, stop: asyncio.Event) -> None:
    """Manual turns (commit + response.create); the reply's audio is played out as it comes
    from its first delta to `response.done` (the wait before it is the STT flush and the LLM,
    not a stream), and each reply must complete."""
    pcm = speech()
    data = (np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes()
    chunk = 4800 * 2  # 0.2 s of PCM16
    async with websockets.connect(
        f"{url}/v1/realtime", additional_headers={"Authorization": f"Bearer {token}"}, max_size=None
    ) as ws:
        done = asyncio.Event()
        playback = Playback(log)
        audio_flowing = False

        async def receive() -> None:
            nonlocal audio_flowing
            try:
                async for raw in ws:
                    event = json.loads(raw)
                    if event["type"] == "response.output_audio.delta":
                        if not audio_flowing:
                            audio_flowing = True
                            playback.start()
                        playback.add(len(base64.b64decode(event["delta"])) / 2 / 24000)
                    if event["type"] == "error":
                        log.problem(f"realtime error: {event['error']}")
                    elif event["type"] == "response.done":
                        if event["response"]["status"] != "completed":
                            log.problem(f"reply ended {event['response']['status']}")
                        audio_flowing = False
                        await playback.stop()
                        done.set()
            except websockets.ConnectionClosed as exc:
                if not stop.is_set():
                    log.problem(close_text(exc))
            done.set()

        reader = asyncio.create_task(receive())
        await ws.send(
            json.dumps({"type": "session.update", "session": {"audio": {"input": {"turn_detection": None}}}})
        )
        while not stop.is_set() and not reader.done():
            for start in range(0, len(data), chunk):
                await ws.send(
                    json.dumps(
                        {
                            "type": "input_audio_buffer.append",
                            "audio": base64.b64encode(data[start : start + chunk]).decode(),
                        }
                    )
                )
                await asyncio.sleep(0.04)
            done.clear()
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            await ws.send(json.dumps({"type": "response.create"}))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 60)
            await asyncio.sleep(0.2)
        await ws.close()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await playback.stop()


CLIENTS: dict[str, Callable[[str, str, Journal, asyncio.Event], Awaitable[None]]] = {
    "stt": stt,
    "tts": tts,
    "realtime": realtime,
}


async def main(kind: str, url: str, key: str, out: TextIO) -> None:
    log = Journal(out)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # The parent closes our stdin to stop us.
    watcher = loop.run_in_executor(None, sys.stdin.read)
    watcher.add_done_callback(lambda _: stop.set())
    try:
        await CLIENTS[kind](url, key, log, stop)
    except Exception as exc:  # the parent reports it; the service is what is under test
        log.problem(f"healthy client failed: {type(exc).__name__}: {exc}")
    log.write("end")
    await watcher


if __name__ == "__main__":
    kind, url, key, path = sys.argv[1:5]
    with open(path, "w") as out:
        asyncio.run(main(kind, url, key, out))
