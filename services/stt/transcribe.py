"""`POST /v1/transcribe`: a whole audio file in, timed words out, through the same slots."""

from __future__ import annotations

import asyncio
import time

from fastapi import HTTPException, Request
from pydantic import BaseModel

from kit.audio import SAMPLE_RATE, AudioFormatError, AudioTooLongError, decode_audio_file
from kit.http_body import read_body
from kit.protocol import EndWord, MarkerOut, Word
from services.stt.batcher import SttBatcher
from services.stt.settings import SttSettings

# A WAV of the longest accepted duration at 48 kHz/16-bit stereo, plus headers.
_BYTES_PER_SECOND_LIMIT = 48_000 * 2 * 2


class TimedWord(BaseModel):
    """A recognised word and where it lies in the file, in seconds."""

    text: str
    start: float
    stop: float | None


class Transcription(BaseModel):
    """The response of `POST /v1/transcribe`."""

    text: str
    words: list[TimedWord]
    duration_s: float


async def transcribe(request: Request, batcher: SttBatcher, settings: SttSettings) -> Transcription:
    """Decode the upload, stream it through a free slot at full speed, collect the words."""
    limit = int(settings.transcribe_max_s * _BYTES_PER_SECOND_LIMIT) + 4096
    data = await read_body(request, limit, what="file", idle_timeout_s=settings.http_body_timeout_s)
    if not data:
        raise HTTPException(400, "empty body: send an audio file (WAV, FLAC or OGG)")
    try:
        pcm = await asyncio.to_thread(decode_audio_file, data, settings.transcribe_max_s)
    except AudioTooLongError as exc:
        raise HTTPException(413, str(exc)) from None
    except AudioFormatError as exc:
        raise HTTPException(415, str(exc)) from None
    duration = pcm.size / SAMPLE_RATE

    deadline = time.monotonic() + settings.transcribe_wait_s
    while (slot := batcher.open()) is None:
        if time.monotonic() >= deadline:
            raise HTTPException(503, "no free channels", headers={"Retry-After": "5"})
        await asyncio.sleep(0.1)
    words: list[TimedWord] = []
    try:
        batcher.push_audio(slot, pcm)
        batcher.push_marker(slot, 0)
        while True:
            message = await slot.outbox.get()
            if message is None or isinstance(message, MarkerOut):
                break
            if isinstance(message, Word):
                words.append(TimedWord(text=message.text, start=message.start_time, stop=None))
            elif isinstance(message, EndWord) and words and words[-1].stop is None:
                words[-1] = words[-1].model_copy(update={"stop": message.stop_time})
    finally:
        batcher.close(slot)
    return Transcription(text=" ".join(w.text for w in words), words=words, duration_s=round(duration, 3))
