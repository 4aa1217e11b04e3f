"""`python -m tests.tts.faulty_tts`: the TTS service on espeak-ng whose engine step raises as a
whole once a client sends the trigger word, to test what a step failure does to the service
(per-stream failures, which the engine catches itself, are tested on the real engine)."""

from __future__ import annotations

from collections.abc import Sequence

from services.common.cli import common_flags, run
from services.tts.app import build_app
from services.tts.engines.base import SlotInput, StepResult
from services.tts.engines.espeak_engine import EspeakTtsEngine
from services.tts.settings import TtsSettings

TRIGGER = "steptrigger"


class FaultyEspeakEngine(EspeakTtsEngine):
    """espeak-ng, except that a step in which any stream receives TRIGGER raises."""

    def step(self, inputs: Sequence[SlotInput]) -> StepResult:
        if any(word.text == TRIGGER for item in inputs for word in item.words):
            raise RuntimeError("simulated device fault")
        return super().step(inputs)


def main() -> None:
    parser = common_flags("python -m tests.tts.faulty_tts", "TTS service with a faulty engine")
    parser.add_argument("--batch-size", type=int, dest="batch_size")
    run(
        "TTS",
        parser,
        TtsSettings,
        lambda settings: build_app(settings, lambda s: FaultyEspeakEngine(s.batch_size, s.voice)),
    )


if __name__ == "__main__":
    main()
