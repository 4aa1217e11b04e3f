"""Driving a TTS engine's `step` directly, as the service's step loop does, and keeping what
each slot produced, step by step."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class SlotRun:
    """What one slot produced: its words and frames, each with the step that gave it."""

    words: list[tuple[int, str, float, float]] = field(default_factory=list)
    frames: list[tuple[int, np.ndarray]] = field(default_factory=list)
    error: str | None = None
    done_at: int | None = None

    @property
    def texts(self) -> list[str]:
        return [text for _, text, _, _ in self.words]

    @property
    def pcm(self) -> np.ndarray:
        return np.concatenate([f for _, f in self.frames]) if self.frames else np.zeros(0, np.float32)

    def first_audio_step(self) -> int | None:
        return self.frames[0][0] if self.frames else None


def run_steps(engine, inputs_at: dict[int, Sequence], max_steps: int = 5000) -> dict[int, SlotRun]:
    """Step the engine, giving it `inputs_at[n]` (SlotInputs) at step n, until every slot that
    was given input is done."""
    runs: dict[int, SlotRun] = {}
    expected = {item.slot for items in inputs_at.values() for item in items}
    for step in range(max_steps):
        for slot, out in engine.step(list(inputs_at.get(step, []))).outputs.items():
            run = runs.setdefault(slot, SlotRun())
            run.words += [(step, w.text, w.start_s, w.stop_s) for w in out.words]
            run.frames += [(step, frame) for frame in out.frames]
            run.error = run.error or out.error
            if out.done:
                run.done_at = step
        if step >= max(inputs_at) and all(runs.get(s) and runs[s].done_at is not None for s in expected):
            return runs
    raise AssertionError(f"streams did not finish in {max_steps} steps")
