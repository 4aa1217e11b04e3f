"""Per-turn latency: end of speech -> final transcript -> first LLM token -> first TTS
audio -> first audio sent to the client. Logged, exported, and sent to the UI."""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass

from prometheus_client import Histogram

logger = logging.getLogger(__name__)

STAGE_SECONDS = Histogram(
    "orchestrator_turn_stage_seconds",
    "Seconds spent in each stage of a turn",
    ["stage"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0),
)
STAGES = (
    "transcript",
    "llm_first_token",
    "tts_first_audio",
    "first_audio_sent",
    "voice_to_voice",
    "prepared_early",
)


@dataclass
class TurnLatency:
    """Monotonic timestamps of one turn; stages are derived, never stored twice."""

    speech_end: float
    transcript: float | None = None
    llm_first_token: float | None = None
    tts_first_audio: float | None = None
    first_audio_sent: float | None = None
    prepared: float | None = None  # a preemptive reply began (before the turn was sure) ...
    released: float | None = None  # ... and was sent once it was

    @staticmethod
    def now() -> float:
        return time.monotonic()

    def stages_ms(self) -> dict[str, float | None]:
        """Each stage's duration from the previous mark, and the whole voice-to-voice time."""
        marks = [
            self.speech_end,
            self.transcript,
            self.llm_first_token,
            self.tts_first_audio,
            self.first_audio_sent,
        ]
        out: dict[str, float | None] = {}
        for name, (before, after) in zip(STAGES[:4], itertools.pairwise(marks), strict=True):
            out[name] = None if before is None or after is None else round((after - before) * 1000, 1)
        sent = self.first_audio_sent
        out["voice_to_voice"] = None if sent is None else round((sent - self.speech_end) * 1000, 1)
        early = None
        if self.prepared is not None and self.released is not None:
            early = round((self.released - self.prepared) * 1000, 1)
        out["prepared_early"] = early  # how long the reply was prepared before the turn was sure
        return out

    def publish(self, session_id: str) -> dict[str, float | None]:
        """Observe the histograms and log once; returns the stages for the client event."""
        stages = self.stages_ms()
        for name, value in stages.items():
            if value is not None:
                STAGE_SECONDS.labels(name).observe(value / 1000)
        logger.info(
            "turn latency", extra={"session": session_id, **{f"{k}_ms": v for k, v in stages.items()}}
        )
        return stages
