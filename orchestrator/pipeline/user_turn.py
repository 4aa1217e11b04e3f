"""The user's turn as it is being built: its item id, its words, and when it starts and ends."""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.pipeline.config import TurnDetectionConfig
from orchestrator.pipeline.events import new_id
from orchestrator.pipeline.turns import TurnDetector, TurnEvent
from services.common.audio import SAMPLE_RATE


@dataclass(frozen=True, slots=True)
class FinishedTurn:
    """What a committed turn hands on: its item, whether speech_started was sent, its audio."""

    item_id: str
    was_speaking: bool
    audio_end_ms: int
    audio_s: float


@dataclass
class UserTurn:
    """Fed with the input audio's length and the STT's steps and words; pure bookkeeping."""

    detector: TurnDetector = field(default_factory=TurnDetector)
    input_ms: float = 0.0  # all input audio of the session
    _item_id: str | None = None
    _words: list[str] = field(default_factory=list)
    _speaking: bool = False  # a speech_started was sent for the current item
    _committed_ms: float = 0.0  # input audio up to the last commit

    @property
    def item_id(self) -> str:
        """The current turn's item (made on first use: a word or speech_started names it)."""
        if self._item_id is None:
            self._item_id = new_id("item")
        return self._item_id

    def configure(self, detection: TurnDetectionConfig) -> None:
        self.detector.threshold = detection.threshold
        self.detector.silence_duration_ms = detection.silence_duration_ms

    def heard_audio(self, samples: int) -> None:
        self.input_ms += samples * 1000 / SAMPLE_RATE

    def on_step(self, prs: list[float]) -> TurnEvent | None:
        """One STT step's pause probabilities; SPEECH_STARTED or END_OF_TURN when one happens."""
        event = self.detector.on_step(prs)
        if event is TurnEvent.SPEECH_STARTED:
            self._speaking = True
        return event

    def on_word(self, text: str, detect: bool) -> TurnEvent | None:
        """A recognised word joins the turn; with turn detection on, it is also speech."""
        self._words.append(text)
        if detect and self.detector.on_word() is TurnEvent.SPEECH_STARTED:
            self._speaking = True
            return TurnEvent.SPEECH_STARTED
        return None

    def quiet_s(self) -> float:
        """How long the user has been quiet, as the detector counts it."""
        return self.detector.quiet_ms / 1000

    def commit(self) -> FinishedTurn:
        """End the turn here (its words may still be arriving: `take_transcript` after the flush)."""
        turn = FinishedTurn(
            item_id=self.item_id,
            was_speaking=self._speaking,
            audio_end_ms=int(self.input_ms),
            audio_s=max(0.0, (self.input_ms - self._committed_ms) / 1000),
        )
        self._speaking = False
        self._committed_ms = self.input_ms
        return turn

    def take_transcript(self) -> str:
        """The committed turn's words; the next word starts a new item."""
        transcript = " ".join(self._words).strip()
        self._words.clear()
        self._item_id = None
        return transcript

    def clear(self) -> None:
        """Forget the unfinished turn."""
        self._words.clear()
        self._item_id = None
        self._speaking = False
        self.detector.reset()
