"""Smart Turn v3.2: an audio end-of-turn model (Pipecat's, BSD-2), run with onnxruntime.

It hears the last 8 s of the user's turn and says how likely the turn is complete: it
tells a finished question from a speaker pausing mid-phrase, which a silence timer cannot.
The ONNX file is not in this repository: `make turn-model` (scripts/fetch-smart-turn.sh)
takes it from the `pipecat-ai` wheel on PyPI into build/models/, and the orchestrator never
depends on pipecat itself.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import soxr

from kit.audio import SAMPLE_RATE as INPUT_RATE
from orchestrator.turn_model.whisper_features import SAMPLE_RATE, WINDOW_SECONDS, log_mel_features

if TYPE_CHECKING:
    import onnxruntime

DEFAULT_MODEL_PATH = (
    Path(__file__).resolve().parents[2] / "build/models/smart-turn-v3.2/smart-turn-v3.2-cpu.onnx"
)
FETCH_COMMAND = "make turn-model"

# A little more than the window is resampled, so that the resampler's start-up transient
# falls outside the 8 s the model sees. The tail starts on a whole period of the two rates
# (3 samples at 24 kHz for 2 at 16 kHz), so that it lands on the same 16 kHz sample grid as
# the whole turn would: otherwise each call, as the turn grows, would see its audio shifted
# by a fraction of a sample, and the int8 model's answer moves by 0.1 for far less.
_RATE_PERIOD = INPUT_RATE // math.gcd(INPUT_RATE, SAMPLE_RATE)
_TAIL_SAMPLES = int((WINDOW_SECONDS + 0.1) * INPUT_RATE)


class TurnModelMissing(FileNotFoundError):
    """The ONNX file is not where it was looked for."""


class SmartTurn:
    """One loaded Smart Turn model. `probability` may be called from several threads at once
    (onnxruntime sessions are thread-safe); each call runs on one core."""

    def __init__(self, session: onnxruntime.InferenceSession) -> None:
        self._session = session
        self._input = session.get_inputs()[0].name

    @classmethod
    def from_path(cls, path: Path | str | None = None) -> SmartTurn:
        """Load the model from `path` (default: DEFAULT_MODEL_PATH, where `make turn-model`
        puts it) and run it once, so that the first real turn does not pay for the warm-up."""
        import onnxruntime

        model = Path(path) if path is not None else DEFAULT_MODEL_PATH
        if not model.is_file():
            raise TurnModelMissing(
                f"Smart Turn model not found at {model}: `{FETCH_COMMAND}` downloads it "
                "(scripts/fetch-smart-turn.sh, from the pipecat-ai wheel on PyPI)"
            )
        options = onnxruntime.SessionOptions()
        # One core per call: the event loop and the other sessions keep the rest.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        turn = cls(onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"]))
        turn.probability(np.zeros(INPUT_RATE, dtype=np.float32))
        return turn

    def probability(self, audio_24k: npt.NDArray[np.floating]) -> float:
        """How likely (0 to 1) the turn whose mono 24 kHz samples are `audio_24k` is complete.
        Only its last 8 s count. Blocks for the model's run (55-75 ms on one core of this machine)."""
        return self._score(_tail(audio_24k))

    async def end_probability(self, audio_24k: npt.NDArray[np.floating]) -> float:
        """`probability` in a worker thread, so the event loop never waits on the model. The
        samples it needs are copied first: the caller may go on appending to its buffer."""
        return await asyncio.to_thread(self._score, _tail(audio_24k).copy())

    def _score(self, tail_24k: npt.NDArray[np.float32]) -> float:
        audio_16k = soxr.resample(tail_24k, INPUT_RATE, SAMPLE_RATE, quality="HQ")
        features = log_mel_features(audio_16k)[np.newaxis]
        (output,) = self._session.run(None, {self._input: features})
        return float(output[0, 0])


def _tail(audio_24k: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    audio = np.asarray(audio_24k, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"expected mono audio (1-D), got shape {audio.shape}")
    start = max(0, audio.size - _TAIL_SAMPLES)
    return audio[start - start % _RATE_PERIOD :]
