"""The moshi STT step's host work done for the whole batch at once gives what per-slot code gave."""

from __future__ import annotations

import numpy as np

from services.stt.engines.base import PAUSE_HORIZONS_S, pause_probabilities_array, round_prs
from services.stt.engines.words import PAD_TOKEN, WORD_START_TOKEN, SlotWordDecoders, WordDecoder


def _decode(ids: list[int]) -> str:
    return "".join(chr(ord("a") + i % 26) for i in ids) if ids[0] != 4 else " "  # 4 decodes to blank


def test_slot_decoders_emit_exactly_what_one_decoder_per_slot_emits():
    rng = np.random.default_rng(0)
    batch, steps = 16, 400
    batched = SlotWordDecoders(_decode, batch)
    alone = [WordDecoder(_decode) for _ in range(batch)]
    frame = np.zeros(batch, dtype=np.int64)
    got: list[list] = [[] for _ in range(batch)]
    want: list[list] = [[] for _ in range(batch)]
    for step in range(steps):
        reset = [int(b) for b in np.flatnonzero(rng.random(batch) < 0.01)]
        batched.reset(reset)
        for b in reset:
            alone[b] = WordDecoder(_decode)
            frame[b] = 0
        active = rng.random(batch) < 0.9
        active[reset] = True
        tokens = rng.choice([PAD_TOKEN] * 6 + [WORD_START_TOKEN] * 2 + [4, 5, 6, 7, 8], batch)
        times = (frame - 3) * 0.08 - 0.5  # the first frames fall inside the model delay
        for b, events in batched.push(tokens, times, active).items():
            got[b].append((step, events))
        for b in np.flatnonzero(active):
            if events := alone[b].push(int(tokens[b]), float(times[b])):
                want[b].append((step, events))
        frame[active] += 1
    assert got == want
    assert sum(len(w) for w in want) > 100, "the streams should produce words"


def test_pause_probabilities_for_a_batch_equal_the_per_slot_formula():
    rng = np.random.default_rng(1)
    windows = rng.integers(0, 120, 20000)
    silence = np.array([sum([512 / 16000] * int(n), 0.0) for n in windows])  # summed as the VAD does
    speech = rng.uniform(-0.1, 1.1, silence.size).astype(np.float32)
    got = pause_probabilities_array(silence, speech)
    for s, p, row in zip(silence, speech, got, strict=True):
        quiet = 1.0 - min(1.0, max(0.0, float(p)))
        assert row.tolist() == [round(quiet * min(1.0, s / (h / 2)), 4) for h in PAUSE_HORIZONS_S]


def test_rounding_of_head_probabilities_is_pythons():
    probs = np.random.default_rng(2).uniform(0, 1, 100000).astype(np.float32)
    probs[:3] = [0.03125, 0.00005, 0.99995]  # exact or near halves
    assert round_prs(probs).tolist() == [round(float(p), 4) for p in probs]
