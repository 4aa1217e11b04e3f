"""The three backends a session talks to, behind one seam.

`ServiceBackends` opens real streams to the STT and TTS services and uses the LLM
client; tests hand a session fakes with the same shape and drive it in-process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, Self

import numpy as np

from orchestrator.clients.llm import LlmClient
from orchestrator.clients.stt import SttStream
from orchestrator.clients.tts import TtsStream
from services.common.protocol import WireMessage


class Stream(Protocol):
    """An open backend stream; closed on leaving its `async with` (it holds a slot)."""

    async def __aenter__(self) -> Self: ...
    async def __aexit__(self, *exc: object) -> None: ...
    def events(self) -> AsyncIterator[WireMessage]: ...


class SttConnection(Stream, Protocol):
    async def send_audio(self, pcm: np.ndarray) -> None: ...
    async def send_marker(self, marker_id: int) -> None: ...


class TtsConnection(Stream, Protocol):
    async def send_word(self, word: str) -> None: ...
    async def send_eos(self) -> None: ...


class Llm(Protocol):
    def stream(self, messages: list[dict[str, str]], max_tokens: int | None) -> AsyncIterator[str]: ...


class TurnModel(Protocol):
    """An audio end-of-turn model: how likely the turn in `audio` (24 kHz) is complete."""

    async def end_probability(self, audio: np.ndarray) -> float: ...


class Backends(Protocol):
    """Hands out the streams of one session; raises `BackendError` when it cannot."""

    llm: Llm
    turn_model: TurnModel | None  # None: pauses are judged by the STT's pause heads

    async def open_stt(self) -> SttConnection: ...
    async def open_tts(self, voice: str | None) -> TtsConnection: ...


@dataclass
class ServiceBackends:
    """The real services, shared by all sessions of the process."""

    stt_url: str
    tts_url: str
    service_key: str
    llm: LlmClient
    turn_model: TurnModel | None = None

    async def open_stt(self) -> SttStream:
        """A new STT stream, `Ready` received."""
        return await SttStream.open(self.stt_url, self.service_key)

    async def open_tts(self, voice: str | None) -> TtsStream:
        """A new TTS stream in `voice`, `Ready` received."""
        return await TtsStream.open(self.tts_url, self.service_key, voice)
