"""One `/api/tts_streaming` WebSocket: its query checks, and what the TTS does with each client
message and how it sends audio.

The stream's life (slot, `Ready`, send and receive loops, idle timeout, message budget) is
the shared skeleton's, `services.common.stream_session`.
"""

from __future__ import annotations

from typing import Literal

from fastapi import WebSocket
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.types import Message

from kit.protocol import (
    TTS_CLIENT_MESSAGES,
    AudioOut,
    Eos,
    ProtocolError,
    TextIn,
    VoiceIn,
    WireMessage,
    describe_errors,
)
from services.common.stream_session import StreamSession
from services.tts import metrics
from services.tts.batcher import TtsBatcher, TtsSlot
from services.tts.engines.base import StreamStart, TtsEngine, VoiceError
from services.tts.settings import TtsSettings
from services.tts.text import split_words

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


class TtsSession(StreamSession[TtsSlot]):
    """A client's stream, from `Ready` to the server's close after the last frame."""

    def __init__(
        self,
        ws: WebSocket,
        batcher: TtsBatcher,
        settings: TtsSettings,
        query: StreamQuery,
        start: StreamStart,
    ) -> None:
        super().__init__(ws, batcher, settings, TTS_CLIENT_MESSAGES, metrics.STREAMS)
        self.batcher = batcher
        self.settings: TtsSettings = settings  # the TTS's own: `max_text_chars` too
        self.sends_messages = query.format != "Pcm"
        self.start = start
        self.chars = 0
        self.eos = False

    def waits_for_output(self) -> bool:
        """A client waiting for its audio after `Eos` has nothing more to say."""
        return self.eos

    def encode(self, message: WireMessage) -> bytes | None:
        """A `Pcm` client gets the audio alone, as float32 little-endian samples."""
        if self.sends_messages:
            return message.pack()
        return message.pcm.astype("<f4").tobytes() if isinstance(message, AudioOut) else None

    async def handle(self, slot: TtsSlot, msg: Message) -> None:
        """Words, `Eos` or a `Voice` for the batcher."""
        parsed = self._parse(slot, msg)
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
            self.reject(slot, "invalid", str(exc))
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
            self.reject(slot, "after_eos", "Text after Eos is ignored: the stream is ending")
            return
        if self.chars + len(text) > self.settings.max_text_chars:
            self.reject(
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
            self.reject(slot, "voice_late", "Voice must come before the first Text")
            return
        embedding = voice.array()
        try:
            self.batcher.engine.check_embedding(embedding)
        except VoiceError as exc:
            self.reject(slot, "voice", f"cannot use this Voice: {exc}")
            return
        self.start = StreamStart(voice=embedding, cfg_alpha=self.start.cfg_alpha)
