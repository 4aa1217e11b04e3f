"""A moshi-server STT client for tests: it sends exactly what Kyutai's clients send."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import msgpack
import numpy as np
import websockets

FRAME = 1920


def audio_msg(pcm: np.ndarray) -> bytes:
    """An `Audio` message packed as Kyutai's scripts pack it (float32)."""
    return msgpack.packb(
        {"type": "Audio", "pcm": np.asarray(pcm, dtype=np.float32).tolist()}, use_single_float=True
    )


def marker_msg(marker_id: int) -> bytes:
    return msgpack.packb({"type": "Marker", "id": marker_id})


@dataclass
class SttRun:
    """Everything a stream received, in order."""

    messages: list[dict] = field(default_factory=list)

    def of(self, kind: str) -> list[dict]:
        return [m for m in self.messages if m["type"] == kind]

    @property
    def types(self) -> list[str]:
        return [m["type"] for m in self.messages]

    @property
    def words(self) -> list[tuple[str, float]]:
        return [(m["text"], m["start_time"]) for m in self.of("Word")]


def connect(url: str, api_key: str | None):
    headers = {"kyutai-api-key": api_key} if api_key is not None else {}
    return websockets.connect(f"{url}/api/asr-streaming", additional_headers=headers, max_size=None)


async def transcribe_stream(
    url: str, api_key: str, pcm: np.ndarray, *, chunk: int = FRAME, marker_id: int = 7, pace_s: float = 0.0
) -> SttRun:
    """Send `pcm` in chunks, then a Marker, and read until the Marker comes back."""
    run = SttRun()
    async with connect(url, api_key) as ws:
        first = msgpack.unpackb(await ws.recv())
        run.messages.append(first)
        if first["type"] != "Ready":
            return run
        for start in range(0, len(pcm), chunk):
            await ws.send(audio_msg(pcm[start : start + chunk]))
            if pace_s:
                await asyncio.sleep(pace_s)
        await ws.send(marker_msg(marker_id))
        while True:
            msg = msgpack.unpackb(await asyncio.wait_for(ws.recv(), timeout=60))
            run.messages.append(msg)
            if msg["type"] == "Marker":
                break
    return run


def speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """Warbling tones with pauses: not speech, but it drives the tiny model through words and pads."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 24000)) / 24000
    freq = 180 + 60 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))
    voiced = (np.sin(2 * np.pi * 0.4 * t + rng.uniform(0, 6)) > -0.3).astype(np.float32)
    return (0.3 * np.sin(2 * np.pi * np.cumsum(freq) / 24000) * voiced).astype(np.float32)
