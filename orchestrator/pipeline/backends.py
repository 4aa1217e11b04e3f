"""The three backends a session talks to, behind one seam.

`ServiceBackends` opens real streams to the STT and TTS services and uses the LLM
client, each time on the replica with the most room (`clients.replicas`); tests hand a
session fakes with the same shape and drive it in-process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, Self

import numpy as np

from kit.protocol import WireMessage
from orchestrator.clients.llm_request import LlmDelta, LlmRequest
from orchestrator.clients.replicas import LlmReplicas, ReplicaPool
from orchestrator.clients.stt import SttStream
from orchestrator.clients.tts import TtsStream


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
    def stream(self, request: LlmRequest) -> AsyncIterator[LlmDelta]: ...


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
    """The real services, shared by all sessions of the process.

    Every open chooses its replica anew: a session's STT reconnect and each reply's TTS
    stream and LLM request go to a replica that is up and has room.
    """

    stt: ReplicaPool
    tts: ReplicaPool
    service_key: str
    llm: LlmReplicas
    turn_model: TurnModel | None = None

    async def open_stt(self) -> SttStream:
        """A new STT stream, `Ready` received."""
        return await self.stt.place(lambda replica: SttStream.open(replica.url, self.service_key))

    async def open_tts(self, voice: str | None) -> TtsStream:
        """A new TTS stream in `voice`, `Ready` received."""
        return await self.tts.place(lambda replica: TtsStream.open(replica.url, self.service_key, voice))
