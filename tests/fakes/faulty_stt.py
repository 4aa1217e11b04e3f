"""`python -m tests.fakes.faulty_stt`: the STT service on the whisper engine with injected faults,
to test what the service does around its engine: a step raises once a client sends the trigger
frame (every sample 0.5); with `--decode-fault` every Whisper decode raises in the engine's
decode worker (the first segment of speech sets it off); and `--step-delay-s` makes every step
that long, a model that runs behind a client sending faster than real time."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from kit.serve import common_flags, run
from services.stt.app import build_app
from services.stt.engines.base import FrameResult
from services.stt.engines.whisper_decoder import Decoded, DecodeJob
from services.stt.engines.whisper_engine import WhisperSttEngine
from services.stt.settings import SttSettings

TRIGGER = 0.5


class FaultyWhisperEngine(WhisperSttEngine):
    """Whisper, except that a frame of constant TRIGGER makes the whole step raise, each step
    takes at least `step_delay_s`, and with `decode_fault` every decode raises."""

    def __init__(self, batch_size: int, step_delay_s: float, decode_fault: bool) -> None:
        super().__init__(batch_size)
        self.step_delay_s = step_delay_s
        self.decode_fault = decode_fault

    def step(
        self, frames: npt.NDArray[np.float32], active: npt.NDArray[np.bool_], reset: Sequence[int]
    ) -> list[FrameResult | None]:
        if any(active[b] and np.all(frames[b] == TRIGGER) for b in range(self.batch_size)):
            raise RuntimeError("simulated device fault")
        time.sleep(self.step_delay_s)
        return super().step(frames, active, reset)

    def _decode(self, jobs: list[DecodeJob]) -> list[Decoded]:
        if self.decode_fault:
            raise RuntimeError("simulated device fault")
        return super()._decode(jobs)


def main() -> None:
    # The faults are the engine's, not service settings, so they are taken off before the service's flags.
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--step-delay-s", type=float, default=0.0, help="Sleep this long in every step.")
    own.add_argument("--decode-fault", action="store_true", help="Every Whisper decode raises.")
    fault, argv = own.parse_known_args()
    parser = common_flags("python -m tests.fakes.faulty_stt", "STT service with a faulty engine")
    parser.add_argument("--batch-size", type=int, dest="batch_size")

    def engine(settings: SttSettings) -> FaultyWhisperEngine:
        return FaultyWhisperEngine(settings.batch_size, fault.step_delay_s, fault.decode_fault)

    run("STT", parser, SttSettings, lambda settings: build_app(settings, engine), argv)


if __name__ == "__main__":
    main()
