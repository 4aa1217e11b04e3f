"""The words of an audio message a client put in the conversation (`input_audio`).

It gets a stream of its own on the STT service, the engine every spoken turn goes through,
so a clip and a spoken turn are heard alike; the session's live stream is left alone (its
turn detection must not hear the clip). The clip goes out in one-second messages, then a
`Marker`; the STT echoes it once all of the clip is transcribed.
"""

from __future__ import annotations

import asyncio

import numpy as np

from kit.audio import SAMPLE_RATE
from kit.protocol import Error, MarkerOut, Word
from orchestrator.clients.errors import BackendError, BackendTimeout
from orchestrator.pipeline.backends import Backends

CHUNK_SAMPLES = SAMPLE_RATE  # one second per message, far below the STT's message limit
MARGIN_S = 5.0  # beyond the clip's own length: a connect and the STT's flush


async def transcribe_clip(backends: Backends, pcm: np.ndarray) -> str:
    """The words the STT hears in `pcm` (24 kHz float32); `BackendError` if it cannot."""
    timeout_s = MARGIN_S + pcm.size / SAMPLE_RATE
    words: list[str] = []
    try:
        async with asyncio.timeout(timeout_s), await backends.open_stt() as stream:
            for start in range(0, pcm.size, CHUNK_SAMPLES):
                await stream.send_audio(pcm[start : start + CHUNK_SAMPLES])
            await stream.send_marker(1)
            async for message in stream.events():
                if isinstance(message, Word):
                    words.append(message.text)
                elif isinstance(message, MarkerOut):
                    break
                elif isinstance(message, Error):
                    raise BackendError("STT", message.message)
    except TimeoutError:
        raise BackendTimeout(
            "STT", f"no transcript of a {pcm.size / SAMPLE_RATE:.1f} s clip within {timeout_s:.0f} s"
        ) from None
    return " ".join(words)
