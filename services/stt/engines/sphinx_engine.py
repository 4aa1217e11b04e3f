"""The CPU lite engine: pocketsphinx's US-English model, its endpointer and its VAD.

pocketsphinx decodes one utterance at a time, so each slot runs its own decoder and
endpointer; a "batch step" walks the active slots in turn. Words are emitted when the
endpointer closes an utterance (pocketsphinx's segmentation is only final then), which
a `Marker` forces by pushing enough silence through. No torch is imported here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import soxr
from pocketsphinx import Decoder, Endpointer, Vad

from services.common.audio import FRAME_RATE, SAMPLE_RATE
from services.common.protocol import EndWord, Word
from services.stt.engines.base import FrameResult, SttEngine, pause_probabilities

RATE = 16_000
SPHINX_FRAMES_PER_S = 100  # pocketsphinx segment times are in 10 ms frames
ENDPOINT_WINDOW_S = 0.3
# Finishing an utterance costs time in proportion to its length, inside one step (0.6 s for
# 120 s of noise here): an utterance that never pauses is cut into pieces of at most this.
MAX_UTTERANCE_S = 15.0
# Active HMMs per 10 ms frame (pocketsphinx's default is 30000). Once the cepstral mean has
# adapted to full-scale noise, the search costs ~35 ms per 80 ms frame, so a few noisy streams
# hold every slot below real time; 5000 halves that and the test phrases read the same
# (2000 was cheaper still, but lost them).
MAX_HMM_PER_FRAME = 5000
_FILLERS = re.compile(r"^(<s>|</s>|<sil>|\[.*\]|\(.*\))$")


class _SphinxStream:
    """One slot: resampler, endpointer and (reused) decoder."""

    def __init__(self, decoder: Decoder, cmn: str) -> None:
        # The decoder adapts its cepstral mean to what it hears; a stream must not inherit the
        # previous one's (after full-scale noise, speech was no longer recognised).
        decoder.set_cmn(cmn)
        self.decoder = decoder
        self.endpointer = Endpointer(window=ENDPOINT_WINDOW_S, vad_mode=Vad.LOOSE, sample_rate=RATE)
        self.resampler = soxr.ResampleStream(SAMPLE_RATE, RATE, 1, dtype="int16")
        self.pending = b""
        self.samples_in = 0  # 16 kHz samples seen, for timestamps
        self.in_utterance = False
        self.utt_start_s = 0.0
        self.cut = False  # the last utterance was cut at MAX_UTTERANCE_S, not ended by a pause
        self.silence_s = 0.0

    def process(self, frame: npt.NDArray[np.float32]) -> FrameResult:
        pcm16 = self.resampler.resample_chunk((np.clip(frame, -1, 1) * 32767).astype(np.int16))
        self.pending += pcm16.tobytes()
        events: list[Word | EndWord] = []
        size = self.endpointer.frame_bytes
        frame_s = self.endpointer.frame_length
        speech_now = False
        while len(self.pending) >= size:
            chunk, self.pending = self.pending[:size], self.pending[size:]
            self.samples_in += size // 2
            speech = self.endpointer.process(chunk)
            if self.endpointer.in_speech:
                speech_now = True
                self.silence_s = 0.0
            else:
                self.silence_s += frame_s
            if speech is not None:
                if not self.in_utterance:
                    self.decoder.start_utt()
                    self.in_utterance = True
                    # After a cut, the speech goes on: the new utterance starts with this chunk.
                    cut_at = (self.samples_in - len(speech) // 2) / RATE
                    self.utt_start_s = cut_at if self.cut else self.endpointer.speech_start
                    self.cut = False
                self.decoder.process_raw(speech, full_utt=False)
            too_long = self.samples_in / RATE - self.utt_start_s > MAX_UTTERANCE_S
            if self.in_utterance and (not self.endpointer.in_speech or too_long):
                events.extend(self._finish_utterance())
                self.cut = self.endpointer.in_speech
        return FrameResult(prs=pause_probabilities(self.silence_s, 1.0 if speech_now else 0.0), events=events)

    def _finish_utterance(self) -> list[Word | EndWord]:
        self.decoder.end_utt()
        self.in_utterance = False
        events: list[Word | EndWord] = []
        segments = self.decoder.seg()
        if segments is None:
            # pocketsphinx found no hypothesis at all (noise, or too little speech): no words.
            return events
        for seg in segments:
            word = re.sub(r"\(\d+\)$", "", seg.word)
            if _FILLERS.match(word):
                continue
            start = self.utt_start_s + seg.start_frame / SPHINX_FRAMES_PER_S
            stop = self.utt_start_s + (seg.end_frame + 1) / SPHINX_FRAMES_PER_S
            events.append(Word(text=word, start_time=round(start, 3)))
            events.append(EndWord(stop_time=round(stop, 3)))
        return events

    def close(self) -> None:
        if self.in_utterance:
            self.decoder.end_utt()
            self.in_utterance = False


class SphinxSttEngine(SttEngine):
    """pocketsphinx behind the batched engine interface."""

    name = "sphinx"
    pause_source = "pocketsphinx endpointer"
    prefix_frames = 0

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        # Words come out once the endpointer has seen ENDPOINT_WINDOW_S of silence;
        # twice that is enough for a Marker's flush to always close the utterance.
        self.delay_frames = math.ceil(2 * ENDPOINT_WINDOW_S * FRAME_RATE) + 1
        # A decoder loads the acoustic model (~0.3 s): one per slot is built here, at load time,
        # and reused by every stream of that slot, so a new stream never stalls the step.
        self._decoders = [
            Decoder(samprate=RATE, loglevel="FATAL", maxhmmpf=MAX_HMM_PER_FRAME) for _ in range(batch_size)
        ]
        self._initial_cmn = self._decoders[0].get_cmn(update=False)
        self._streams: list[_SphinxStream | None] = [None] * batch_size

    def step(
        self, frames: npt.NDArray[np.float32], active: npt.NDArray[np.bool_], reset: Sequence[int]
    ) -> list[FrameResult | None]:
        """Feed one frame to each active slot's recogniser."""
        for b in reset:
            old = self._streams[b]
            if old is not None:
                old.close()
            self._streams[b] = _SphinxStream(self._decoders[b], self._initial_cmn)
        results: list[FrameResult | None] = []
        for b in range(self.batch_size):
            stream = self._streams[b]
            if not active[b] or stream is None:
                results.append(None)
                continue
            results.append(stream.process(frames[b]))
        return results
