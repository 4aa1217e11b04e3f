"""`POST /synthesize` (the original design's API): text in, streamed float32 PCM out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from fastapi import HTTPException
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from kit.audio import SAMPLE_RATE
from kit.protocol import AudioOut, Error
from services.tts.batcher import TtsBatcher, TtsSlot
from services.tts.session import MAX_VOICE_NAME, stream_start
from services.tts.settings import TtsSettings
from services.tts.text import split_words


class SynthesizeRequest(BaseModel):
    """What to say, and optionally with which voice (or alias) and CFG strength."""

    text: str
    voice: str | None = Field(None, max_length=MAX_VOICE_NAME)
    cfg_alpha: float | None = Field(None, ge=0.0, le=10.0)


def body_limit(settings: TtsSettings) -> int:
    """Bytes a `POST /synthesize` body may take: the longest text allowed with every character
    JSON-escaped as a surrogate pair (12 bytes, as `ensure_ascii` writes an emoji), plus room for
    the voice and the rest of the object."""
    return settings.max_text_chars * 12 + 16 * 1024


async def _pcm_stream(batcher: TtsBatcher, slot: TtsSlot) -> AsyncIterator[bytes]:
    try:
        while (message := await slot.outbox.get()) is not None:
            if isinstance(message, AudioOut):
                yield message.pcm.astype("<f4").tobytes()
            elif isinstance(message, Error):
                # Headers are gone by now; ending the body early is all HTTP allows.
                return
    finally:
        batcher.close(slot)


async def synthesize(
    request: SynthesizeRequest, batcher: TtsBatcher, settings: TtsSettings
) -> StreamingResponse:
    """Validate, take a slot (waiting up to `synthesize_wait_s`), and stream the audio as it comes."""
    text = request.text.strip()
    if not text:
        raise HTTPException(400, "text is empty")
    if len(text) > settings.max_text_chars:
        raise HTTPException(413, f"text is {len(text)} characters; the limit is {settings.max_text_chars}")
    try:
        start = stream_start(batcher.engine, settings, request.voice, request.cfg_alpha)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    words = split_words(text)
    if not words:
        raise HTTPException(400, "text has no words to speak")

    deadline = time.monotonic() + settings.synthesize_wait_s
    while (slot := batcher.open()) is None:
        if time.monotonic() >= deadline:
            raise HTTPException(503, "no free channels", headers={"Retry-After": "5"})
        await asyncio.sleep(0.1)
    batcher.start(slot, start)
    batcher.push_words(slot, words)
    batcher.push_eos(slot)
    return StreamingResponse(
        _pcm_stream(batcher, slot),
        media_type="application/octet-stream",
        headers={"X-Sample-Rate": str(SAMPLE_RATE), "X-Audio-Format": "f32le", "X-Channels": "1"},
    )
