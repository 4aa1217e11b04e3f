"""`python -m tests.fakes.faulty_tts --engine piper|espeak`: the TTS service on a real CPU engine
whose step raises as a whole once a client sends the trigger word, to test what a step failure
does to the service (per-stream failures, which the engines catch themselves, are tested on
the real engines)."""

from __future__ import annotations

from collections.abc import Sequence

from kit.serve import common_flags, run
from services.tts.app import build_app
from services.tts.engines import load_engine
from services.tts.engines.base import SlotInput, StepResult, TtsEngine
from services.tts.settings import TtsSettings

TRIGGER = "steptrigger"


def faulty_engine(settings: TtsSettings) -> TtsEngine:
    """The engine the settings name, except that a step in which any stream receives TRIGGER raises."""
    engine = load_engine(settings)
    real_step = engine.step

    def step(inputs: Sequence[SlotInput]) -> StepResult:
        if any(word.text == TRIGGER for item in inputs for word in item.words):
            raise RuntimeError("simulated device fault")
        return real_step(inputs)

    engine.step = step  # type: ignore[method-assign]
    return engine


def main() -> None:
    parser = common_flags("python -m tests.fakes.faulty_tts", "TTS service with a faulty engine")
    parser.add_argument("--engine", choices=["piper", "espeak"], required=True)
    parser.add_argument("--batch-size", type=int, dest="batch_size")
    run("TTS", parser, TtsSettings, lambda settings: build_app(settings, faulty_engine))


if __name__ == "__main__":
    main()
