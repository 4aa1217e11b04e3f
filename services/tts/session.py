"""One `/api/tts_streaming` WebSocket: query checks, slot, then receive and send loops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from typing import Annotated, Literal, Self

import msgpack
import numpy as np
import numpy.typing as npt
from fastapi import WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator

from services.common.protocol import (
    AudioOut,
    Eos,
    Error,
    MessageParser,
    ProtocolError,
    Ready,
    TextIn,
    VoiceIn,
)
from services.common.ratelimit import MessagePacer
from services.tts import metrics
from services.tts.batcher import TtsBatcher, TtsSlot
from services.tts.engines.base import StreamStart, TtsEngine, VoiceError
from services.tts.settings import TtsSettings
from services.tts.text import split_words

logger = logging.getLogger(__name__)

NO_FREE_CHANNELS = "no free channels"
EOS_FRAME = b"\x00"  # moshi-server's binary end-of-stream marker
MAX_VOICE_VALUES = 512 * 2000  # a 512-d embedding of 2000 frames (160 s of reference audio)
MAX_VOICE_NAME = 256
_FLOAT32_MAX = float(np.finfo(np.float32).max)

EmbeddingValue = Annotated[float, Field(allow_inf_nan=False, ge=-_FLOAT32_MAX, le=_FLOAT32_MAX)]


class VoiceEmbeddingIn(VoiceIn):
    """A `Voice` message whose every field is checked before use: a [1, dim, frames] embedding
    of finite float32 values, no bigger than `MAX_VOICE_VALUES`, with as many values as its shape."""

    embeddings: list[EmbeddingValue] = Field(max_length=MAX_VOICE_VALUES)
    shape: tuple[Literal[1], PositiveInt, PositiveInt]

    @model_validator(mode="after")
    def _shape_fits_values(self) -> Self:
        size = math.prod(self.shape)
        if size != len(self.embeddings):
            raise ValueError(f"shape {list(self.shape)} needs {size} values, got {len(self.embeddings)}")
        return self

    def array(self) -> npt.NDArray[np.float32]:
        """The embedding as a float32 array of its shape."""
        return np.asarray(self.embeddings, dtype=np.float32).reshape(self.shape)


CLIENT_MESSAGES = (TextIn, Eos, VoiceEmbeddingIn)


def describe(exc: ValidationError) -> str:
    """A client-facing summary of what failed validation."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors(include_url=False)
    )


class StreamQuery(BaseModel):
    """Query parameters of `/api/tts_streaming` (moshi-server's names).

    `seed`, `temperature`, `top_k`, `voices` and `max_seq_len` are accepted and ignored,
    as moshi-server does; sampling settings are the server's.
    """

    model_config = ConfigDict(extra="ignore")

    voice: str | None = Field(None, max_length=MAX_VOICE_NAME)
    format: Literal["PcmMessagePack", "Pcm"] = "PcmMessagePack"
    cfg_alpha: float | None = Field(None, ge=0.0, le=10.0)


class QueryError(ValueError):
    """The stream's query string cannot be served; answered with HTTP 400 before the upgrade."""


def parse_query(
    params: dict[str, str], engine: TtsEngine, settings: TtsSettings
) -> tuple[StreamQuery, StreamStart]:
    """Validate the query against what the engine can do."""
    try:
        query = StreamQuery.model_validate(params)
    except ValidationError as exc:
        raise QueryError(f"bad query: {describe(exc)} (formats: PcmMessagePack, Pcm)") from None
    try:
        return query, stream_start(engine, settings, query.voice, query.cfg_alpha)
    except ValueError as exc:
        raise QueryError(str(exc)) from None


def stream_start(
    engine: TtsEngine, settings: TtsSettings, voice: str | None, cfg: float | None
) -> StreamStart:
    """The voice (or the voice its alias stands for) and CFG a stream asked for, or the defaults,
    checked against what the engine can load."""
    voice = engine.resolve_voice(voice) if voice else engine.default_voice
    cfg = cfg if cfg is not None else settings.cfg_alpha
    engine.check_voice(voice)
    engine.check_cfg_alpha(cfg)
    return StreamStart(voice=voice, cfg_alpha=cfg)


class TtsSession:
    """A client's stream, from `Ready` to the server's close after the last frame."""

    def __init__(
        self,
        ws: WebSocket,
        batcher: TtsBatcher,
        settings: TtsSettings,
        query: StreamQuery,
        start: StreamStart,
    ) -> None:
        self.ws = ws
        self.batcher = batcher
        self.settings = settings
        self.raw_pcm = query.format == "Pcm"
        self.start = start
        self.parser = MessageParser(CLIENT_MESSAGES, settings.max_message_bytes)
        self.pacer = MessagePacer(settings.max_messages_per_second)
        self.chars = 0
        self.eos = False

    async def run(self) -> None:
        """Serve the stream; the server closes (1000) once the audio after `Eos` is out."""
        await self.ws.accept()
        slot = self.batcher.open()
        if slot is None:
            if not self.raw_pcm:
                await self.ws.send_bytes(Error(message=NO_FREE_CHANNELS).pack())
            await self.ws.close()
            return
        if not self.raw_pcm:
            await self.ws.send_bytes(Ready().pack())
        sender = asyncio.create_task(self._send_loop(slot), name=f"tts-send-{slot.index}")
        receiver = asyncio.create_task(self._receive_loop(slot), name=f"tts-recv-{slot.index}")
        try:
            # The stream ends when the audio is all sent (sender) or the client leaves (receiver).
            await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.batcher.close(slot)
            for task in (receiver, sender):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                    await task

    def _error(self, slot: TtsSlot, reason: str, message: str) -> None:
        metrics.PROTOCOL_ERRORS.labels(reason).inc()
        if not self.raw_pcm:
            slot.outbox.put_nowait(Error(message=message))

    async def _receive_loop(self, slot: TtsSlot) -> None:
        while True:
            try:
                msg = await asyncio.wait_for(self.ws.receive(), timeout=self.settings.idle_timeout_s)
            except TimeoutError:
                if self.eos:
                    continue  # a client waiting for its audio after Eos has nothing more to say
                self._error(slot, "idle", f"no message for {self.settings.idle_timeout_s:.0f} s, closing")
                slot.outbox.put_nowait(None)
                return
            if msg["type"] == "websocket.disconnect":
                return
            await self.pacer.take()
            if msg.get("text") is not None:
                # moshi-server reads a text frame as a Text message: it gets the same checks.
                data = msgpack.packb({"type": "Text", "text": msg["text"]})
            else:
                data = msg.get("bytes") or b""
            if data == EOS_FRAME:
                self._on_eos(slot)
                continue
            try:
                parsed = self.parser.parse(data)
            except ProtocolError as exc:
                self._error(slot, "invalid", str(exc))
                continue
            if isinstance(parsed, TextIn):
                self._on_text(slot, parsed.text)
            elif isinstance(parsed, Eos):
                self._on_eos(slot)
            elif isinstance(parsed, VoiceEmbeddingIn):
                self._on_voice(slot, parsed)

    def _begin(self, slot: TtsSlot) -> None:
        if not slot.started:
            self.batcher.start(slot, self.start)

    def _on_text(self, slot: TtsSlot, text: str) -> None:
        if self.eos:
            self._error(slot, "after_eos", "Text after Eos is ignored: the stream is ending")
            return
        if self.chars + len(text) > self.settings.max_text_chars:
            self._error(
                slot,
                "too_long",
                f"text over the limit of {self.settings.max_text_chars} characters per stream; ignored",
            )
            return
        self.chars += len(text)
        words = split_words(text)
        if words:  # empty or blank text is harmless, as with moshi-server
            self._begin(slot)
            self.batcher.push_words(slot, words)

    def _on_eos(self, slot: TtsSlot) -> None:
        if self.eos:
            return
        self.eos = True
        self._begin(slot)
        self.batcher.push_eos(slot)

    def _on_voice(self, slot: TtsSlot, voice: VoiceEmbeddingIn) -> None:
        if slot.started:
            self._error(slot, "voice_late", "Voice must come before the first Text")
            return
        embedding = voice.array()
        try:
            self.batcher.engine.check_embedding(embedding)
        except VoiceError as exc:
            self._error(slot, "voice", f"cannot use this Voice: {exc}")
            return
        self.start = StreamStart(voice=embedding, cfg_alpha=self.start.cfg_alpha)

    async def _send_loop(self, slot: TtsSlot) -> None:
        while (message := await slot.outbox.get()) is not None:
            if self.raw_pcm:
                if isinstance(message, AudioOut):
                    await self.ws.send_bytes(message.pcm.astype("<f4").tobytes())
                continue
            await self.ws.send_bytes(message.pack())
        with contextlib.suppress(Exception):
            await self.ws.close(code=1000)
