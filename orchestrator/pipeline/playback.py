"""Where a reply's audio stands on the client, estimated as real-time playback from the
moment its first frame went out: what has played, which words were heard, when it ends."""

from __future__ import annotations

import asyncio
import contextlib

from kit.audio import SAMPLE_RATE
from orchestrator.pipeline.latency import TurnLatency


class Playback:
    """The audio a reply has sent, the TTS's word times, and whether the client dropped it."""

    def __init__(self) -> None:
        self.start: float | None = None  # when the client starts playing it (monotonic s)
        self.not_before = 0.0  # the client plays it after audio it still has (monotonic s)
        self.audio_ms = 0.0  # how much audio was sent (all of it plays, unless cut)
        self.words: list[tuple[str, float, float]] = []  # the TTS's word times (s)
        self.cleared = False  # the client dropped what was left (barge-in or cancel)
        self.finished = False  # all of it played out
        self._cut = asyncio.Event()

    def sent(self, samples: int) -> bool:
        """A frame of `samples` went out; True for the first."""
        first = self.start is None
        if first:
            self.start = max(TurnLatency.now(), self.not_before)
        self.audio_ms += samples * 1000 / SAMPLE_RATE
        return first

    def played_ms(self) -> float:
        """Where the client's playback should be."""
        if self.start is None:
            return 0.0
        return min(self.audio_ms, max(0.0, (TurnLatency.now() - self.start) * 1000))

    def end(self) -> float:
        """When the client will have played all of it, as things stand (monotonic s)."""
        if self.start is None:
            return max(TurnLatency.now(), self.not_before)
        return self.start + self.audio_ms / 1000

    def playing(self) -> bool:
        return self.start is not None and self.played_ms() < self.audio_ms

    def heard_text(self, audio_end_ms: float) -> str:
        """The words whose audio had started by `audio_end_ms`."""
        return " ".join(text for text, start, _ in self.words if start * 1000 < audio_end_ms)

    def cut(self) -> bool:
        """The client drops its playback: nothing more of this audio plays. True if this
        cleared audio that was still due (the client must be told)."""
        clears = self.start is not None and not self.finished and not self.cleared
        self.cleared = self.cleared or clears
        self.audio_ms = self.played_ms()
        self._cut.set()
        return clears

    async def until_played(self) -> bool:
        """Once no more audio comes: wait until all of it has played; False if it was cut first."""
        left_s = self.end() - TurnLatency.now()
        if left_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._cut.wait(), left_s)
        self.finished = not self.cleared
        return self.finished
