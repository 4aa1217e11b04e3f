"""Pause probabilities from Silero VAD, for moshi STT models without end-of-turn heads.

Runs silero-vad's packaged ONNX model with onnxruntime, batched over slots. The
recurrent state and the 64-sample context are kept per slot in arrays owned here, so
one slot's reset never disturbs another (the packaged wrappers keep one shared state).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soxr

from services.common.audio import SAMPLE_RATE
from services.stt.engines.base import pause_probabilities

VAD_RATE = 16_000
WINDOW = 512  # samples per Silero window at 16 kHz (32 ms)
CONTEXT = 64
SPEECH_THRESHOLD = 0.5


def _model_path() -> Path:
    import silero_vad

    return Path(silero_vad.__file__).parent / "data" / "silero_vad.onnx"


class SileroPauses:
    """Batched Silero VAD turning each slot's frames into the 4 pause probabilities."""

    def __init__(self, batch_size: int) -> None:
        import onnxruntime

        opts = onnxruntime.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(
            str(_model_path()), providers=["CPUExecutionProvider"], sess_options=opts
        )
        self.batch_size = batch_size
        self._state = np.zeros((2, batch_size, 128), dtype=np.float32)
        self._context = np.zeros((batch_size, CONTEXT), dtype=np.float32)
        self._pending = [np.zeros(0, dtype=np.float32) for _ in range(batch_size)]
        self._resamplers = [self._resampler() for _ in range(batch_size)]
        self._silence_s = np.zeros(batch_size)
        self._speech_prob = np.zeros(batch_size)

    @staticmethod
    def _resampler() -> soxr.ResampleStream:
        return soxr.ResampleStream(SAMPLE_RATE, VAD_RATE, 1, dtype="float32")

    def reset(self, slots: Sequence[int]) -> None:
        """Forget everything about these slots (a new stream starts there)."""
        for b in slots:
            self._state[:, b] = 0.0
            self._context[b] = 0.0
            self._pending[b] = np.zeros(0, dtype=np.float32)
            self._resamplers[b] = self._resampler()
            self._silence_s[b] = 0.0
            self._speech_prob[b] = 0.0

    def step(self, frames: npt.NDArray[np.float32], active: npt.NDArray[np.bool_]) -> list[list[float]]:
        """Consume one 24 kHz frame per active slot; return prs per slot (zeros for inactive)."""
        for b in np.flatnonzero(active):
            chunk = self._resamplers[b].resample_chunk(frames[b])
            self._pending[b] = np.concatenate([self._pending[b], chunk])
        while True:
            ready = [b for b in np.flatnonzero(active) if self._pending[b].size >= WINDOW]
            if not ready:
                break
            windows = np.stack([self._pending[b][:WINDOW] for b in ready])
            x = np.concatenate([self._context[ready], windows], axis=1)
            out, state = self._session.run(
                None, {"input": x, "state": self._state[:, ready], "sr": np.array(VAD_RATE, dtype=np.int64)}
            )
            self._state[:, ready] = state
            self._context[ready] = windows[:, -CONTEXT:]
            for i, b in enumerate(ready):
                self._pending[b] = self._pending[b][WINDOW:]
                prob = float(out[i, 0])
                self._speech_prob[b] = prob
                self._silence_s[b] = (
                    0.0 if prob >= SPEECH_THRESHOLD else self._silence_s[b] + WINDOW / VAD_RATE
                )
        return [
            pause_probabilities(self._silence_s[b], self._speech_prob[b]) if active[b] else [0.0] * 4
            for b in range(self.batch_size)
        ]
