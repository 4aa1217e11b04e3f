"""One `/api/tts_streaming` WebSocket: query checks, slot, then receive and send loops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Literal

from fastapi import WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.types import Message

from kit.protocol import (
    TTS_CLIENT_MESSAGES,
    AudioOut,
    Eos,
    Error,
    MessageParser,
    ProtocolError,
    Ready,
    TextIn,
    VoiceIn,
    WireMessage,
    describe_errors,
)
from kit.ratelimit import POLICY_VIOLATION, MessageBudget, RateLimitExceeded
from services.tts import metrics
from services.tts.batcher import TtsBatcher, TtsSlot
from services.tts.engines.base import StreamStart, TtsEngine, VoiceError
from services.tts.settings import TtsSettings
from services.tts.text import split_words

logger = logging.getLogger(__name__)

NO_FREE_CHANNELS = "no free channels"
EOS_FRAME = b"\x00"  # moshi-server's binary end-of-stream marker
MAX_VOICE_NAME = 256


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
        raise QueryError(f"bad query: {describe_errors(exc)} (formats: PcmMessagePack, Pcm)") from None
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
        self.parser = MessageParser(TTS_CLIENT_MESSAGES, settings.max_message_bytes)
        self.budget = MessageBudget(settings.max_messages_per_second)
        self.close_code = 1000
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
            try:
                parsed = self._parse(slot, msg)
            except RateLimitExceeded as exc:
                self._error(slot, "rate", str(exc))
                self.close_code = POLICY_VIOLATION
                slot.outbox.put_nowait(None)
                return
            if isinstance(parsed, TextIn):
                self._on_text(slot, parsed.text)
            elif isinstance(parsed, Eos):
                self._on_eos(slot)
            elif isinstance(parsed, VoiceIn):
                self._on_voice(slot, parsed)

    def _parse(self, slot: TtsSlot, msg: Message) -> WireMessage | None:
        """The client's message, or None once a bad one has been answered with an `Error`.

        Text that adds words spends the per-stream character budget instead of the message
        budget: Kyutai's own client sends one `Text` per word, all at once.
        """
        try:
            if msg.get("text") is not None:
                # moshi-server reads a text frame as a Text message: it gets the same checks.
                parsed = self.parser.validate({"type": "Text", "text": msg["text"]})
            elif (data := msg.get("bytes") or b"") == EOS_FRAME:
                parsed = Eos()
            else:
                parsed = self.parser.parse(data)
        except ProtocolError as exc:
            self.budget.spend()
            self._error(slot, "invalid", str(exc))
            return None
        speaks = (
            isinstance(parsed, TextIn)
            and not self.eos
            and self.chars + len(parsed.text) <= self.settings.max_text_chars
            and bool(split_words(parsed.text))
        )
        if not speaks:
            self.budget.spend()
        return parsed

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

    def _on_voice(self, slot: TtsSlot, voice: VoiceIn) -> None:
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
            await self.ws.close(code=self.close_code)
