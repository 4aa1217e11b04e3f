"""The user's turn as it is being built: its item id, words and audio, and the turn-taking
rules read from it (when it ends, when the user interrupts, when the user has gone quiet)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from kit.audio import SAMPLE_RATE
from orchestrator.pipeline.config import TurnDetectionConfig
from orchestrator.pipeline.events import new_id
from orchestrator.pipeline.turns import FRAME_MS, TurnDetector, TurnEvent

TURN_AUDIO_S = 8.0  # what the end-of-turn model looks at
# Words that acknowledge rather than interrupt ("mm-hm", "yeah" while the assistant talks);
# a real interruption goes on past them ("yeah but ...": "but" interrupts).
# Spellings as Whisper writes them ("Mm-hmm.", "Uh-huh,") are matched without case or punctuation;
# "uh-uh" is there because Whisper also hears "uh-huh" so.
BACKCHANNELS = frozenset(
    {"mm", "mmm", "mhm", "mhmm", "hmm", "hm", "hum", "mm-hm", "mm-hmm", "uh-huh", "uh-uh", "uh", "um"}
    | {"ah", "oh", "huh", "yeah", "yes", "yep", "right", "okay", "ok", "sure", "aha"}
)
_PUNCTUATION = ".,!?;:…\"'"


def is_backchannel(text: str) -> bool:
    """Whether `text` (a word or a transcript) is only acknowledgement: "Mm-hmm.", "Yeah, okay."."""
    words = [w.lower().strip(_PUNCTUATION) for w in text.split()]
    return all(w in BACKCHANNELS for w in words if w)


@dataclass(frozen=True, slots=True)
class FinishedTurn:
    """What a committed turn hands on: its item, whether speech_started was sent, its audio."""

    item_id: str
    was_speaking: bool
    audio_end_ms: int
    audio_s: float


@dataclass
class UserTurn:
    """Fed with the input audio and the STT's steps and words; pure bookkeeping, no I/O."""

    detector: TurnDetector = field(default_factory=TurnDetector)
    input_ms: float = 0.0  # all input audio of the session
    quiet_since_reply_ms: float = 0.0  # for idle_timeout_ms
    _item_id: str | None = None
    _words: list[str] = field(default_factory=list)
    _speaking: bool = False  # a speech_started was sent for the current item
    _committed_ms: float = 0.0  # input audio up to the last commit
    _audio: deque[np.ndarray] = field(default_factory=deque)
    _audio_samples: int = 0

    @property
    def item_id(self) -> str:
        """The current turn's item (made on first use: a word or speech_started names it)."""
        if self._item_id is None:
            self._item_id = new_id("item")
        return self._item_id

    def configure(self, detection: TurnDetectionConfig, *, use_model: bool) -> None:
        self.detector.config = detection
        self.detector.use_model = use_model

    def heard_audio(self, pcm: np.ndarray) -> None:
        """Input audio: counted, and its last `TURN_AUDIO_S` kept for the end-of-turn model."""
        self.input_ms += pcm.size * 1000 / SAMPLE_RATE
        self._audio.append(pcm)
        self._audio_samples += pcm.size
        while self._audio_samples - self._audio[0].size >= TURN_AUDIO_S * SAMPLE_RATE:
            self._audio_samples -= self._audio.popleft().size

    def recent_audio(self) -> np.ndarray:
        """Up to the last `TURN_AUDIO_S` of input, for the end-of-turn model."""
        return np.concatenate(self._audio) if self._audio else np.zeros(0, np.float32)

    def on_step(self, prs: list[float]) -> TurnEvent | None:
        """One STT step's pause probabilities; the turn event it causes, if any."""
        event = self.detector.on_step(prs)
        if event is TurnEvent.SPEECH_STARTED:
            self._speaking = True
        return event

    def on_word(self, text: str, detect: bool) -> TurnEvent | None:
        """A recognised word joins the turn; with turn detection on, it is also speech."""
        self._words.append(text)
        if not detect:
            return None
        event = self.detector.on_word()
        if event is TurnEvent.SPEECH_STARTED:
            self._speaking = True
        return event

    def spoken_before_pause(self, start_s: float, now_s: float) -> bool:
        """Whether a word that began at `start_s` on the STT's clock (now at `now_s`) was spoken
        before the pause the user is in. Whisper sends a segment's words once the segment has
        ended, well into the pause after it: such a word is the STT catching up, not the user
        speaking again, and must neither restart the pause nor count as talking over a reply."""
        return self.detector.quiet_ms > 0 and start_s < now_s - self.quiet_s()

    def interrupts(self, word: str | None = None) -> bool:
        """Whether the user is really talking over the assistant: a word that is not a
        backchannel, or voiced audio for `interrupt_speech_ms` (a cough or a click is not)."""
        if word is not None:
            return not is_backchannel(word)
        return self.detector.voiced_ms() >= max(FRAME_MS, self.detector.config.interrupt_speech_ms)

    def idle(self, assistant_busy: bool) -> bool:
        """One more quiet step: True once `idle_timeout_ms` of it followed the last reply."""
        timeout = self.detector.config.idle_timeout_ms
        if timeout is None or assistant_busy or self.detector.speaking or self._words:
            self.quiet_since_reply_ms = 0.0
            return False
        self.quiet_since_reply_ms += FRAME_MS
        if self.quiet_since_reply_ms < timeout:
            return False
        self.quiet_since_reply_ms = 0.0
        return True

    def word_count(self) -> int:
        return len(self._words)

    def transcript(self) -> str:
        """The words so far (a preemptive reply answers these)."""
        return " ".join(self._words).strip()

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
        transcript = self.transcript()
        self._words.clear()
        self._item_id = None
        return transcript

    def clear(self) -> None:
        """Forget the unfinished turn."""
        self._words.clear()
        self._item_id = None
        self._speaking = False
        self.detector.reset()
