"""What the tests and the benchmarks share, and no image carries: the tiny and random-weight
checkpoint makers (`checkpoints`), the fake OpenAI-compatible LLM (`llm_server`), the harness
that runs servers as processes (`processes`), the Realtime test client (`realtime_client`),
word error rates (`wer`) and the recorded phrase (`fixtures/`).

Nothing under kit/, services/, orchestrator/ or cli/ imports it.
"""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"
#: espeak-ng saying "the weather is nice today. one two three." at 16 kHz (fixtures/README.md).
PHRASE_WAV = FIXTURES / "weather_16k.wav"
