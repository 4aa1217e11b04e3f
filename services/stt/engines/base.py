"""The interface every STT engine implements: B fixed slots stepped together, one frame each.

Most engines hand out a frame's words with its step. One that decodes elsewhere (a worker
thread that reads whole segments) finishes words after the step that took their audio: it
hands them over through `late_words`, says through `LateWords.owed_from` which audio it still
owes words for (a `Marker` waits for those), and calls the waker it was given when it has
news, so a step loop that sleeps for want of audio collects them.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from kit.audio import FRAME_SIZE
from kit.protocol import EndWord, Word

# Pause horizons of the prs vector, as moshi-server's end-of-turn heads define them.
PAUSE_HORIZONS_S = (0.5, 1.0, 2.0, 3.0)


@dataclass
class FrameResult:
    """What one slot produced for one frame: pause probabilities and any finished words."""

    prs: list[float]
    events: list[Word | EndWord] = field(default_factory=list)
    #: The raw text token (moshi engine); kept for tests that compare batched and lone runs.
    token: int | None = None


@dataclass
class LateWords:
    """What an engine finished outside its steps, and what it still owes."""

    #: Per slot, words for audio stepped earlier, in order.
    events: dict[int, list[Word | EndWord]] = field(default_factory=dict)
    #: Per slot that still owes words: the first frame of its stream (the frame that reset the
    #: slot is frame 0) whose words are not all out yet. Slots not listed owe nothing.
    owed_from: dict[int, int] = field(default_factory=dict)


class SttEngine(abc.ABC):
    """A batched streaming recogniser with `batch_size` independent slots.

    All methods are blocking and are called from a single worker thread, never from
    the event loop; the engine may therefore keep per-slot state without locks.
    """

    name: str
    batch_size: int
    #: Frames of audio the engine needs after a sound before its words are out; a
    #: `Marker` flush pushes this much silence through (it produces no `Step`: it is not the
    #: client's audio). 0 for an engine that ends its speech itself when told (`flush`).
    delay_frames: int
    #: Silence frames fed at the start of every stream before the client's audio
    #: (moshi's first-frame slot plus the model's silence prefix). They produce no `Step`.
    prefix_frames: int
    #: Where `prs` comes from, for /ready and logs ("model heads", "silero-vad", ...).
    pause_source: str

    @abc.abstractmethod
    def step(
        self, frames: npt.NDArray[np.float32], active: npt.NDArray[np.bool_], reset: Sequence[int]
    ) -> list[FrameResult | None]:
        """Advance every active slot by one frame.

        `frames` is [batch_size, FRAME_SIZE] (rows of inactive slots are ignored), `active` marks
        the slots that have a frame, and `reset` lists slots that start a new stream with
        this frame (their state is cleared first). Returns one result per slot, None for
        inactive ones.
        """

    def flush(self, slots: Sequence[int]) -> None:  # noqa: B027 (a hook few engines need)
        """A `Marker` came after the audio these slots have had so far: end their speech there,
        so that its words come out without waiting for silence. Called in the step thread,
        before the step that takes the audio after it. Engines whose `delay_frames` of silence
        push their words out need nothing here.
        """

    def set_waker(self, wake: Callable[[], None]) -> None:  # noqa: B027 (a hook few engines need)
        """Take the function to call, from any thread, when `late_words` has something new.

        Engines whose words all come out of `step` never call it.
        """

    def late_words(self) -> LateWords:
        """Words finished since the last call and what is still owed. Called in the step thread
        after every step and after a wake. An exception here (the engine's worker failed) is
        fatal like a failing step. Results for a slot that was reset since are never returned.
        """
        return LateWords()

    def warmup(self) -> None:
        """Run the model once on silence, so the first client does not pay for lazy init."""
        active = np.zeros(self.batch_size, dtype=bool)
        active[0] = True
        frames = np.zeros((self.batch_size, FRAME_SIZE), dtype=np.float32)
        self.step(frames, active, reset=[0])
        for _ in range(3):
            self.step(frames, active, reset=[])


def pause_probabilities(silence_s: float, speech_prob: float) -> list[float]:
    """Map a VAD's view (how long it has been silent, how speech-like now) to the 4 prs.

    A VAD cannot predict the future like the model's heads do, so a pause of horizon h
    is taken as certain once silence has lasted h/2: the 2 s entry that clients use
    (prs[2]) passes 0.6 after 0.6 s of silence, in line with common 0.5-0.6 s endpointing.
    """
    return pause_probabilities_array(np.array([silence_s]), np.array([speech_prob]))[0].tolist()


def pause_probabilities_array(
    silence_s: npt.NDArray[np.float64], speech_prob: npt.NDArray[np.floating]
) -> npt.NDArray[np.float64]:
    """`pause_probabilities` for a whole batch at once: [B] and [B] in, [B, 4] out."""
    quiet = 1.0 - np.clip(speech_prob.astype(np.float64), 0.0, 1.0)
    ramp = np.minimum(1.0, silence_s[:, None] / (np.asarray(PAUSE_HORIZONS_S) / 2))
    return round_prs(quiet[:, None] * ramp)


def round_prs(prs: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    """Pause probabilities as sent: 4 decimals, like `round(p, 4)` (half to even on the exact value)."""
    return np.round(prs.astype(np.float64), 4)
