"""A moshi-server TTS client for tests: words one by one, like unmute and Kyutai's script; and the
service's HTTP routes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlencode

import httpx
import msgpack
import numpy as np
import websockets


def text_msg(text: str) -> bytes:
    return msgpack.packb({"type": "Text", "text": text})


EOS = msgpack.packb({"type": "Eos"})


def connect(url: str, api_key: str | None, **query: str):
    headers = {"kyutai-api-key": api_key} if api_key is not None else {}
    params = {"format": "PcmMessagePack", **query}
    return websockets.connect(f"{url}/api/tts_streaming?{urlencode(params)}", additional_headers=headers)


@dataclass
class TtsRun:
    """Everything a stream received, and how it ended."""

    messages: list[dict] = field(default_factory=list)
    close_code: int | None = None

    def of(self, kind: str) -> list[dict]:
        return [m for m in self.messages if m["type"] == kind]

    @property
    def pcm(self) -> np.ndarray:
        frames = [np.asarray(m["pcm"], dtype=np.float32) for m in self.of("Audio")]
        return np.concatenate(frames) if frames else np.zeros(0, np.float32)

    @property
    def words(self) -> list[tuple[str, float, float]]:
        return [(m["text"], m["start_s"], m["stop_s"]) for m in self.of("Text")]


def longest_silence_s(pcm: np.ndarray, threshold: float = 0.005) -> float:
    """The longest stretch of 24 kHz audio that stays under `threshold`, in seconds."""
    quiet = np.concatenate([[0], (np.abs(pcm) < threshold).astype(np.int8), [0]])
    edges = np.diff(quiet)
    return float((np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).max(initial=0)) / 24_000


async def read_all(ws, run: TtsRun, wait_s: float = 120) -> TtsRun:
    """Read until the server closes the stream."""
    try:
        while True:
            run.messages.append(msgpack.unpackb(await asyncio.wait_for(ws.recv(), wait_s)))
    except websockets.ConnectionClosed as closed:
        run.close_code = closed.rcvd.code if closed.rcvd else None
    return run


async def speak(url: str, api_key: str, text: str, *, whole: bool = False, **query: str) -> TtsRun:
    """Send `text` word by word (or `whole`, in one `Text`: a `<break>` tag must not be split
    across messages), then Eos, and collect the whole answer."""
    run = TtsRun()
    async with connect(url, api_key, **query) as ws:
        run.messages.append(msgpack.unpackb(await ws.recv()))
        for part in [text] if whole else text.split():
            await ws.send(text_msg(part))
        await ws.send(EOS)
        await read_all(ws, run)
    return run


async def synthesize(service, **body: object) -> httpx.Response:
    """`POST /synthesize` with this JSON body; the whole response."""
    async with httpx.AsyncClient(timeout=60) as client:
        return await client.post(
            f"{service.http}/synthesize", json=body, headers={"kyutai-api-key": service.api_key}
        )


async def voice_listing(service) -> dict:
    async with httpx.AsyncClient(timeout=10) as client:
        return (await client.get(f"{service.http}/v1/voices")).json()


NEIGHBOUR = "the quick brown fox jumps over the lazy dog."


@contextlib.asynccontextmanager
async def neighbour(service) -> AsyncIterator[None]:
    """A healthy stream holding a slot (words sent, no Eos yet) across the block, then checked:
    it must finish its text with no `Error` and a normal close."""
    run = TtsRun()
    async with connect(service.ws, service.api_key) as ws:
        run.messages.append(msgpack.unpackb(await ws.recv()))
        for word in NEIGHBOUR.split():
            await ws.send(text_msg(word))
        yield
        await ws.send(EOS)
        await read_all(ws, run, 60)
    assert run.of("Error") == [] and run.close_code == 1000
    assert [w for w, _, _ in run.words] == NEIGHBOUR.split()
