"""A moshi-server TTS client for tests: words one by one, like unmute and Kyutai's script."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from urllib.parse import urlencode

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


async def read_all(ws, run: TtsRun, wait_s: float = 120) -> TtsRun:
    """Read until the server closes the stream."""
    try:
        while True:
            run.messages.append(msgpack.unpackb(await asyncio.wait_for(ws.recv(), wait_s)))
    except websockets.ConnectionClosed as closed:
        run.close_code = closed.rcvd.code if closed.rcvd else None
    return run


async def speak(url: str, api_key: str, text: str, **query: str) -> TtsRun:
    """Send `text` word by word, then Eos, and collect the whole answer."""
    run = TtsRun()
    async with connect(url, api_key, **query) as ws:
        run.messages.append(msgpack.unpackb(await ws.recv()))
        for word in text.split():
            await ws.send(text_msg(word))
        await ws.send(EOS)
        await read_all(ws, run)
    return run
