"""Server-side turn detection from the STT's per-frame pause probabilities.

Each 80 ms `Step` carries prs: the probability of a pause of 0.5/1/2/3 s starting now.
A frame counts as voiced when prs[0] < 0.5. Speech starts after `MIN_SPEECH_STEPS`
voiced frames in a row (or a recognised word); a turn ends once prs[2] has reached the
session's threshold and no frame has been voiced for `silence_duration_ms`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from services.common.audio import FRAME_SECONDS

MIN_SPEECH_STEPS = 2  # 160 ms: a click or a breath is not a turn
VOICED_BELOW = 0.5


class TurnEvent(Enum):
    SPEECH_STARTED = "speech_started"
    END_OF_TURN = "end_of_turn"


@dataclass
class TurnDetector:
    """Fed once per STT step; tells when the user starts and finishes speaking."""

    threshold: float = 0.6
    silence_duration_ms: int = 500
    speaking: bool = False
    voiced_run: int = 0
    quiet_ms: float = 0.0

    def on_step(self, prs: list[float]) -> TurnEvent | None:
        voiced = bool(prs) and prs[0] < VOICED_BELOW
        if voiced:
            self.voiced_run += 1
            self.quiet_ms = 0.0
        else:
            self.voiced_run = 0
            self.quiet_ms += FRAME_SECONDS * 1000
        if not self.speaking and self.voiced_run >= MIN_SPEECH_STEPS:
            self.speaking = True
            return TurnEvent.SPEECH_STARTED
        pause = prs[2] if len(prs) > 2 else 0.0
        if self.speaking and pause >= self.threshold and self.quiet_ms >= self.silence_duration_ms:
            self.speaking = False
            return TurnEvent.END_OF_TURN
        return None

    def on_word(self) -> TurnEvent | None:
        """A recognised word is speech even when the pause estimate lags behind."""
        self.quiet_ms = 0.0
        if not self.speaking:
            self.speaking = True
            return TurnEvent.SPEECH_STARTED
        return None

    def reset(self) -> None:
        self.speaking, self.voiced_run, self.quiet_ms = False, 0, 0.0
