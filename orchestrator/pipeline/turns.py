"""When the user starts, pauses, probably finished, surely finished, or interrupts.

Fed once per 80 ms STT `Step` (prs: the probability of a pause of 0.5/1/2/3 s starting
now) and, during a pause, with the end-of-turn model's probability that the turn is
complete. A frame counts as voiced when prs[0] < 0.5; speech starts (or resumes) after
`MIN_SPEECH_STEPS` voiced frames in a row, or a recognised word.

- `server_vad`: the turn ends once prs[2] has reached `threshold` and no frame has been
  voiced for `silence_duration_ms`.
- `semantic_vad`: the turn ends once the end-of-turn probability reaches the eagerness's
  bar after a short quiet, or, whatever the model says, after the eagerness's longest wait.
- A *likely* end comes first, from a lower bar: the session prepares the reply there and
  sends it once the end is sure (preemption).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from kit.audio import FRAME_SECONDS
from orchestrator.pipeline.config import TurnDetectionConfig

MIN_SPEECH_STEPS = 2  # 160 ms: a click or a breath is not a turn
VOICED_BELOW = 0.5
FRAME_MS = FRAME_SECONDS * 1000
LIKELY_QUIET_MS = 160  # the shortest pause that may be an end
LIKELY_BAR = 0.3  # end-of-turn probability that makes an end likely


@dataclass(frozen=True, slots=True)
class Eagerness:
    """semantic_vad: how sure the end-of-turn signal must be, and how long to wait at most."""

    bar: float  # end-of-turn probability that ends the turn ...
    quiet_ms: int  # ... after this much quiet
    max_wait_ms: int  # the turn ends after this much quiet whatever the signal says


# OpenAI's longest waits: 8 / 4 / 2 s for low / medium / high; auto is medium.
EAGERNESS = {
    "low": Eagerness(bar=0.7, quiet_ms=240, max_wait_ms=8_000),
    "medium": Eagerness(bar=0.5, quiet_ms=160, max_wait_ms=4_000),
    "high": Eagerness(bar=0.3, quiet_ms=80, max_wait_ms=2_000),
    "auto": Eagerness(bar=0.5, quiet_ms=160, max_wait_ms=4_000),
}


class TurnEvent(Enum):
    SPEECH_STARTED = "speech_started"
    PAUSE_STARTED = "pause_started"  # the first quiet frame after speech: ask the turn model
    LIKELY_END = "likely_end"
    END_OF_TURN = "end_of_turn"


@dataclass
class TurnDetector:
    """The turn's state between steps; `config` is replaced on `session.update`."""

    config: TurnDetectionConfig = field(default_factory=TurnDetectionConfig)
    use_model: bool = False  # an end-of-turn model judges pauses (else: the STT's pause head)
    speaking: bool = False
    voiced_run: int = 0
    quiet_ms: float = 0.0
    end_probability: float | None = None  # the turn model's, for the current pause
    likely: bool = False  # a likely end was announced in this pause

    def on_step(self, prs: list[float]) -> TurnEvent | None:
        """One STT step; the event it causes, if any."""
        voiced = bool(prs) and prs[0] < VOICED_BELOW
        if voiced:
            self.voiced_run += 1
            self.quiet_ms = 0.0
            self.end_probability = None
        else:
            self.voiced_run = 0
            self.quiet_ms += FRAME_MS
        if self.voiced_run >= MIN_SPEECH_STEPS:
            return self._speech()
        if not self.speaking or voiced:
            return None
        if self.quiet_ms == FRAME_MS:
            return TurnEvent.PAUSE_STARTED
        return self._judge(prs[0] if prs else 0.0, prs[2] if len(prs) > 2 else 0.0)

    def on_end_probability(self, probability: float) -> TurnEvent | None:
        """The turn model's verdict on the current pause (it arrives between steps)."""
        if not self.speaking or self.quiet_ms == 0.0:
            return None  # the user spoke again meanwhile: the verdict is stale
        self.end_probability = probability
        return self._judge(0.0, 0.0)

    def on_word(self) -> TurnEvent | None:
        """A recognised word is speech even when the pause estimate lags behind."""
        self.quiet_ms = 0.0
        self.end_probability = None
        return self._speech()

    def voiced_ms(self) -> float:
        """How long the user has been voiced without a break (the barge-in rule reads it)."""
        return self.voiced_run * FRAME_MS

    def reset(self) -> None:
        self.speaking, self.voiced_run, self.quiet_ms = False, 0, 0.0
        self.end_probability, self.likely = None, False

    def _speech(self) -> TurnEvent | None:
        if not self.speaking:
            self.speaking = True
            return TurnEvent.SPEECH_STARTED
        self.likely = False  # the pause is over: the next one may be a likely end again
        return None

    def _judge(self, head_probability: float, pause_2s: float) -> TurnEvent | None:
        """End, likely end or nothing, from the quiet so far and the end-of-turn signal: the
        turn model's probability once it has judged this pause (with a model, its verdict is
        awaited rather than guessed), else the STT's 0.5 s pause head."""
        config = self.config
        if self.end_probability is not None:
            probability = self.end_probability
        else:
            probability = 0.0 if self.use_model else head_probability
        if config.kind == "server_vad":
            sure = pause_2s >= config.threshold and self.quiet_ms >= config.silence_duration_ms
        else:
            eager = EAGERNESS[config.eagerness]
            sure = (probability >= eager.bar and self.quiet_ms >= eager.quiet_ms) or (
                self.quiet_ms >= eager.max_wait_ms
            )
        if sure:
            self.speaking, self.likely = False, False
            return TurnEvent.END_OF_TURN
        likely_signal = max(probability, head_probability)
        # server_vad: not before half its silence, or every gap between words would flush the
        # STT mid-phrase (the STT then decodes the two halves apart, and worse).
        likely_quiet = (
            LIKELY_QUIET_MS
            if config.kind != "server_vad"
            else max(LIKELY_QUIET_MS, config.silence_duration_ms / 2)
        )
        if not self.likely and self.quiet_ms >= likely_quiet and likely_signal >= LIKELY_BAR:
            self.likely = True
            return TurnEvent.LIKELY_END
        return None
