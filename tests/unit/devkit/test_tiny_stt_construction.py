"""The tiny STT's behaviour is built in, not left to what random weights do on this CPU.

Tests of the tiny stack (and bench/e2e_stack.py --tiny) rely on two things: digital silence
is a pad and a pause, so nothing is "heard" after a turn ends; sound is words, so a turn has
a transcript. Both hold by construction (devkit/checkpoints.py: reserved
channels of the LM, a silence code of Mimi's own), so they must hold on any machine: run
this file with ATEN_CPU_CAPABILITY=default and =avx2 too.
"""

from __future__ import annotations

import numpy as np
import pytest

from devkit import PHRASE_WAV
from kit.audio import FRAME_SIZE
from kit.protocol import Word
from services.stt.engines.words import PAD_TOKEN
from tests.stt.test_batching import cpu_engine

SILENCE_FRAMES_BEFORE_PAD = 4  # Mimi's encoder still hears the sound for up to 320 ms


def _speech() -> np.ndarray:
    import soundfile
    import soxr

    pcm, rate = soundfile.read(PHRASE_WAV, dtype="float32")
    return soxr.resample(pcm, rate, 24_000).astype(np.float32)


def _frames(audio: np.ndarray, count: int) -> np.ndarray:
    return np.pad(audio, (0, max(0, count * FRAME_SIZE - audio.size)))[: count * FRAME_SIZE].reshape(
        count, FRAME_SIZE
    )


@pytest.mark.moshi
@pytest.mark.parametrize("variant", ["stt_dir", "stt_noheads_dir"])
def test_silence_is_a_pad_and_a_pause_and_sound_is_words(tiny, variant):
    speech, quiet = _speech(), np.zeros(2 * 24_000, np.float32)
    talk = np.concatenate([quiet, speech, quiet, speech[:24_000], quiet])
    count = talk.size // FRAME_SIZE
    rng = np.random.default_rng(0)
    streams = [
        _frames(talk, count),
        np.zeros((count, FRAME_SIZE), np.float32),  # silence from the first frame
        (0.1 * rng.standard_normal((count, FRAME_SIZE))).astype(np.float32),  # noise is sound
    ]
    engine = cpu_engine(str(getattr(tiny, variant)), 3)
    active = np.ones(3, dtype=bool)
    tokens = np.zeros((count, 3), dtype=np.int64)
    pauses = np.zeros((count, 3))
    words: list[list[str]] = [[], [], []]
    for i in range(count):
        results = engine.step(np.stack([s[i] for s in streams]), active, reset=[0, 1, 2] if i == 0 else [])
        for b, result in enumerate(results):
            assert result is not None
            tokens[i, b] = PAD_TOKEN if result.token is None else result.token
            pauses[i, b] = result.prs[0]
            words[b] += [e.text for e in result.events if isinstance(e, Word)]

    silent_for = np.zeros(count, dtype=int)  # whole frames of digital silence up to each frame
    for i, frame in enumerate(streams[0]):
        silent_for[i] = 0 if frame.any() else (silent_for[i - 1] + 1 if i else 1)
    settled = silent_for >= SILENCE_FRAMES_BEFORE_PAD
    assert settled.sum() > 50
    assert (tokens[settled, 0] == PAD_TOKEN).all()
    assert (tokens[:, 1] == PAD_TOKEN).all()
    if variant == "stt_dir":  # the end-of-turn heads: silence is a pause
        assert (pauses[settled, 0] > 0.99).all() and (pauses[:, 1] > 0.99).all()
        assert (pauses[~settled & (silent_for == 0), 0] < 0.5).all()  # sound is not
    assert words[0] and words[2] and not words[1]
