"""A minimal OpenAI Realtime client for tests (the SDK is tested separately)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Callable
from ssl import SSLContext

import numpy as np
import soundfile
import websockets

from devkit import PHRASE_WAV
from kit.audio import SAMPLE_RATE, resample


def speech(seconds_of_silence_after: float = 0.0) -> np.ndarray:
    """The espeak-ng phrase fixture at 24 kHz, optionally followed by silence."""
    pcm, rate = soundfile.read(PHRASE_WAV, dtype="float32")
    audio = resample(pcm, rate, SAMPLE_RATE)
    return np.concatenate([audio, np.zeros(int(seconds_of_silence_after * SAMPLE_RATE), np.float32)])


def append_event(pcm: np.ndarray, **extra: object) -> str:
    data = (np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes()
    return json.dumps(
        {"type": "input_audio_buffer.append", "audio": base64.b64encode(data).decode(), **extra}
    )


class RealtimeTestClient:
    """Sends events, collects every server event, waits for the ones a test needs."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.events: list[dict] = []
        self._reader = asyncio.create_task(self._read())
        self._arrived = asyncio.Event()

    @classmethod
    async def connect(
        cls, url: str, token: str | None, *, extensions: bool = True, ssl: SSLContext | None = None
    ) -> RealtimeTestClient:
        """`extensions`: ask for this project's `unmute_slurm.*` events too, as the UI does;
        `ssl`: what a wss:// server's certificate is checked with."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        query = "?extensions=unmute_slurm" if extensions else ""
        options = {"ssl": ssl} if ssl is not None else {}  # ssl=None refuses wss:// outright
        ws = await websockets.connect(
            f"{url}/v1/realtime{query}", additional_headers=headers, max_size=None, **options
        )
        return cls(ws)

    async def _read(self) -> None:
        # A server close (even a non-1000 one, e.g. 1013 "busy") just ends the event list.
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                self.events.append(json.loads(raw))
                self._arrived.set()

    async def send(self, event: dict | str | bytes) -> None:
        """A dict as JSON text; text and bytes (binary audio frames) as they are."""
        await self.ws.send(json.dumps(event) if isinstance(event, dict) else event)

    async def send_audio(self, pcm: np.ndarray, chunk_s: float = 0.1, pace: float = 0.25) -> None:
        """Stream audio in chunks; `pace` is the fraction of real time to wait per chunk."""
        step = int(chunk_s * SAMPLE_RATE)
        for start in range(0, len(pcm), step):
            await self.send(append_event(pcm[start : start + step]))
            await asyncio.sleep(chunk_s * pace)

    async def wait_for(self, predicate: Callable[[dict], bool], start: int = 0, wait_s: float = 60.0) -> dict:
        """The first event at index >= `start` (already received or still coming) that matches."""
        async with asyncio.timeout(wait_s):
            seen = start
            while True:
                for event in self.events[seen:]:
                    if predicate(event):
                        return event
                seen = max(seen, len(self.events))
                self._arrived.clear()
                await self._arrived.wait()

    async def wait_type(self, kind: str, start: int = 0, wait_s: float = 60.0) -> dict:
        """The first event of `kind` at index >= `start`."""
        return await self.wait_for(lambda e: e["type"] == kind, start, wait_s)

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    def audio_bytes(self, response_id: str | None = None) -> bytes:
        return b"".join(
            base64.b64decode(e["delta"])
            for e in self.events
            if e["type"] == "response.output_audio.delta"
            and (response_id is None or e["response_id"] == response_id)
        )

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
