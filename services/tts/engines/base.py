"""The interface every TTS engine implements: B fixed slots, stepped together.

A step takes, per slot, what arrived since the last step (a new stream with its voice,
words, end of text) and returns, per slot, the audio frames and timed words that came
out. All calls happen in one worker thread, never on the event loop.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from kit.protocol import TextOut
from services.tts.text import Word

logger = logging.getLogger(__name__)


class VoiceError(ValueError):
    """A voice that this server cannot use (unknown name, bad embedding)."""


@dataclass(frozen=True)
class StreamStart:
    """A new stream takes the slot: its voice (name or embedding) and CFG strength."""

    voice: str | npt.NDArray[np.float32]
    cfg_alpha: float | None = None


@dataclass
class SlotInput:
    """What one slot received since the previous step."""

    slot: int
    start: StreamStart | None = None
    words: list[Word] = field(default_factory=list)
    eos: bool = False
    #: The client left: drop the slot's stream (no output for it any more).
    stop: bool = False


@dataclass
class SlotOutput:
    """What one slot produced in one step."""

    frames: list[npt.NDArray[np.float32]] = field(default_factory=list)
    words: list[TextOut] = field(default_factory=list)
    done: bool = False
    #: Why the stream could not go on (e.g. a voice embedding the model cannot use); ends it.
    error: str | None = None


@dataclass
class StepResult:
    """Outputs by slot (None where nothing happened) and whether any model work was done."""

    outputs: dict[int, SlotOutput]
    progressed: bool


class TtsEngine(abc.ABC):
    """A batched streaming synthesiser with `batch_size` independent slots."""

    name: str
    batch_size: int
    default_voice: str
    #: Other names for voices (OpenAI's ``alloy``, ``marin``...), each naming a voice that loads.
    aliases: Mapping[str, str] = MappingProxyType({})

    @abc.abstractmethod
    def voices(self) -> list[str]:
        """Names of the voices a client may ask for."""

    def variants(self) -> list[str]:
        """Variants a voice name may carry as ``voice+variant`` (none unless the engine has them)."""
        return []

    def check_voice(self, voice: str) -> None:
        """Raise `VoiceError` unless `voice` can be used."""
        if voice not in self.voices():
            raise VoiceError(
                f"unknown voice {voice!r}; GET /v1/voices lists the {len(self.voices())} available"
            )

    def check_embedding(self, embedding: npt.NDArray[np.float32]) -> None:
        """Raise `VoiceError` unless a client's [1, dim, frames] voice embedding can be used."""
        raise VoiceError(f"the {self.name} engine takes no voice embeddings")

    def use_aliases(self, table: Mapping[str, str]) -> None:
        """Adopt `table` (alias -> voice); an alias whose voice cannot be used gets the default voice."""
        aliases: dict[str, str] = {}
        missing: dict[str, str] = {}
        for alias, voice in table.items():
            try:
                self.check_voice(voice)
                aliases[alias] = voice
            except VoiceError:
                missing[alias] = voice
                aliases[alias] = self.default_voice
        if missing:
            logger.warning(
                "voice aliases name voices this engine cannot load; they use the default voice",
                extra={"aliases": missing, "default_voice": self.default_voice},
            )
        self.aliases = MappingProxyType(aliases)

    def resolve_voice(self, voice: str) -> str:
        """The voice an alias stands for; any other name is itself."""
        return self.aliases.get(voice, voice)

    def check_cfg_alpha(self, cfg_alpha: float) -> None:  # noqa: B027 (optional hook; most engines take any)
        """Raise `ValueError` unless the engine accepts this CFG strength (default: any)."""

    @abc.abstractmethod
    def step(self, inputs: Sequence[SlotInput]) -> StepResult:
        """Apply the inputs, then advance every slot that can make progress by one step."""

    def warmup(self) -> None:
        """Synthesise a short phrase once so the first client does not pay for lazy init."""
        result = self.step(
            [SlotInput(0, StreamStart(self.default_voice), [Word("warm"), Word("up.")], eos=True)]
        )
        for _ in range(10_000):
            if result.outputs.get(0, SlotOutput()).done:
                return
            result = self.step([])
        raise RuntimeError("warm-up synthesis did not finish")
