"""`python -m tests.stt.failing_stt`: the STT service on pocketsphinx whose engine step raises
once a client sends the trigger frame (every sample 0.5), to test what a step failure does."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from services.common.cli import common_flags, run
from services.stt.app import build_app
from services.stt.engines.base import FrameResult
from services.stt.engines.sphinx_engine import SphinxSttEngine
from services.stt.settings import SttSettings

TRIGGER = 0.5


class FailingSphinxEngine(SphinxSttEngine):
    """pocketsphinx, except that a frame of constant TRIGGER makes the whole step raise."""

    def step(
        self, frames: npt.NDArray[np.float32], active: npt.NDArray[np.bool_], reset: Sequence[int]
    ) -> list[FrameResult | None]:
        if any(active[b] and np.all(frames[b] == TRIGGER) for b in range(self.batch_size)):
            raise RuntimeError("simulated device fault")
        return super().step(frames, active, reset)


def main() -> None:
    parser = common_flags("python -m tests.stt.failing_stt", "STT service with a failing engine")
    parser.add_argument("--batch-size", type=int, dest="batch_size")
    run(
        "STT",
        parser,
        SttSettings,
        lambda settings: build_app(settings, lambda s: FailingSphinxEngine(s.batch_size)),
    )


if __name__ == "__main__":
    main()
