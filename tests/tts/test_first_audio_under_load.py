"""A stream that starts while another speaks: catch-up steps bring its first audio sooner and
change nothing that either stream says. And the engine refuses torch.compile on CUDA.

Driven at the engine level on the tiny model (greedy, float32). Its text-to-audio delay is
4 steps and its largest codebook delay 2, so a stream's audio comes on its 7th step; with
catch-up, its first step also runs its 3 other delay steps, text-only, and audio comes on
its 4th.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field

import numpy as np
import pytest

pytestmark = pytest.mark.moshi

SPEAKING = "the quick brown fox."
REPLY = "hello world."
REPLY_AT = 8  # the first stream has been speaking for two steps by then
UNLIMITED_MS = 10_000.0  # the most the setting allows; the tiny model's 3 steps need far less


def _engine(tiny, catchup_ms: float, device: str = "cpu"):
    from services.tts.engines.moshi_engine import MoshiTtsEngine
    from services.tts.settings import TtsSettings

    settings = TtsSettings(
        _env_file=None, model=str(tiny.tts_dir), voice_repo=str(tiny.voices_dir), voice="tiny/default.wav",
        batch_size=2, temperature=0.0, device=device, dtype="float32", catchup_ms=catchup_ms,
    )  # fmt: skip
    return MoshiTtsEngine(settings)


@dataclass
class Run:
    frames: dict[int, list[np.ndarray]] = field(default_factory=lambda: {0: [], 1: []})
    words: dict[int, list[tuple]] = field(default_factory=lambda: {0: [], 1: []})
    #: Steps from the one that gave slot 0 its words to the one that returned its first audio.
    first_audio_steps: int | None = None
    #: Whether slot 1 returned audio on every one of those steps.
    other_kept_speaking: bool = True


def _run(engine) -> Run:
    """Slot 1 speaks from step 0; slot 0 gets its whole reply and Eos at step REPLY_AT."""
    from services.tts.engines.base import SlotInput, StreamStart
    from services.tts.text import split_words

    run, done = Run(), set()
    for step in range(3000):
        inputs = []
        if step == 0:
            inputs.append(SlotInput(1, StreamStart("tiny/default.wav"), split_words(SPEAKING), eos=True))
        if step == REPLY_AT:
            inputs.append(SlotInput(0, StreamStart("tiny/other.wav"), split_words(REPLY), eos=True))
        outputs = engine.step(inputs).outputs
        if step >= REPLY_AT and run.first_audio_steps is None:
            run.other_kept_speaking &= bool(1 in outputs and outputs[1].frames)
            if 0 in outputs and outputs[0].frames:
                run.first_audio_steps = step - REPLY_AT + 1
        for slot, out in outputs.items():
            run.frames[slot] += out.frames
            run.words[slot] += [(w.text, w.start_s, w.stop_s) for w in out.words]
            if out.done:
                done.add(slot)
        if done == {0, 1}:
            return run
    raise AssertionError("streams did not finish")


def test_catch_up_brings_first_audio_sooner_and_changes_nothing_said(tiny):
    lockstep = _run(_engine(tiny, catchup_ms=0.0))
    caught_up = _run(_engine(tiny, catchup_ms=UNLIMITED_MS))
    assert lockstep.other_kept_speaking and caught_up.other_kept_speaking
    assert (lockstep.first_audio_steps, caught_up.first_audio_steps) == (7, 4)
    for slot in (0, 1):
        assert caught_up.words[slot] == lockstep.words[slot] != []
        a, b = np.concatenate(caught_up.frames[slot]), np.concatenate(lockstep.frames[slot])
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_torch_compile_on_cuda_is_refused_at_load(tiny, monkeypatch):
    import torch

    monkeypatch.delenv("NO_TORCH_COMPILE", raising=False)
    # Refused before anything touches CUDA or the checkpoint, so no GPU is needed to see it.
    with pytest.raises(ValueError, match="NO_TORCH_COMPILE") as refused:
        _engine(tiny, catchup_ms=0.0, device="cuda")
    assert f"torch {torch.__version__}" in str(refused.value)


@pytest.mark.parametrize(
    ("device", "no_torch_compile", "refused"),
    [("cuda", None, True), ("cuda", "1", False), ("cpu", None, False)],
)
def test_only_cuda_with_compile_on_is_refused(monkeypatch, device, no_torch_compile, refused):
    import torch

    from services.tts.engines.moshi_engine import check_compile

    if no_torch_compile is None:
        monkeypatch.delenv("NO_TORCH_COMPILE", raising=False)
    else:
        monkeypatch.setenv("NO_TORCH_COMPILE", no_torch_compile)
    if refused:
        with pytest.raises(ValueError, match="NO_TORCH_COMPILE=1"):
            check_compile(torch.device(device))
    else:
        check_compile(torch.device(device))


@pytest.mark.parametrize("no_torch_compile", [None, "1"])
def test_the_compile_switch_is_the_one_moshi_reads(no_torch_compile):
    """moshi decides at import whether its kernels are compiled; the engine's check agrees."""
    env = {k: v for k, v in os.environ.items() if k != "NO_TORCH_COMPILE"}
    if no_torch_compile is not None:
        env["NO_TORCH_COMPILE"] = no_torch_compile
    code = (
        "import moshi.modules.rope as rope\n"
        "from services.tts.engines.moshi_engine import torch_compile_enabled\n"
        "print(hasattr(rope.apply_rope, '__wrapped__'), torch_compile_enabled())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=300
    ).stdout.split()
    assert out == [str(no_torch_compile is None)] * 2
