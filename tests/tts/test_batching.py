"""Four TTS streams with different voices, CFG and texts, batched, each equal to its lone run.

Driven at the engine level with greedy decoding in float32. Word timings must match
exactly; audio within 1e-6, because a batch of 4 and a batch of 1 run different CPU
kernels (last-bit differences in Mimi's decoder, measured at about 1e-7).
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.moshi

STREAMS = [
    ("hello world, this is a test.", "tiny/default.wav", 2.0),
    ("good morning, how are you today?", "tiny/other.wav", 1.5),
    ("the quick brown fox jumps over the lazy dog!", "tiny/other.wav", 3.0),
    ("thank you very much.", "tiny/default.wav", 2.0),
]


def _engine(model: str, voices: str, batch: int):
    from services.tts.engines.moshi_engine import MoshiTtsEngine
    from services.tts.settings import TtsSettings

    settings = TtsSettings(
        model=model, voice_repo=voices, voice="tiny/default.wav", batch_size=batch, temperature=0.0,
        device="cpu", dtype="float32", service_api_key="unused",
    )  # fmt: skip
    return MoshiTtsEngine(settings)


def _run(engine, jobs: list[tuple[int, int, tuple[str, str, float]]]) -> list[tuple[np.ndarray, list]]:
    """jobs: (slot, first step, stream). One word per step per stream, Eos with the last."""
    from services.tts.engines.base import SlotInput, StreamStart
    from services.tts.text import split_words

    words = [split_words(text) for _, _, (text, _, _) in jobs]
    frames: list[list] = [[] for _ in jobs]
    timed: list[list] = [[] for _ in jobs]
    state = ["waiting"] * len(jobs)
    for step in range(3000):
        inputs = []
        for j, (slot, first, (_, voice, cfg)) in enumerate(jobs):
            if state[j] == "waiting" and step >= first:
                inputs.append(SlotInput(slot, StreamStart(voice, cfg), [words[j].pop(0)]))
                state[j] = "running"
            elif state[j] == "running" and words[j]:
                inputs.append(SlotInput(slot, words=[words[j].pop(0)], eos=not words[j]))
        result = engine.step(inputs)
        for j, (slot, _, _) in enumerate(jobs):
            out = result.outputs.get(slot) if state[j] == "running" else None
            if out is not None:
                frames[j] += out.frames
                timed[j] += [(w.text, w.start_s, w.stop_s) for w in out.words]
                if out.done:
                    state[j] = "done"
        if all(s == "done" for s in state):
            return [(np.concatenate(f), t) for f, t in zip(frames, timed, strict=True)]
    raise AssertionError("streams did not finish")


def test_four_streams_match_their_lone_runs(tiny):
    batched = _run(
        _engine(str(tiny.tts_dir), str(tiny.voices_dir), 4), [(i, 2 * i, s) for i, s in enumerate(STREAMS)]
    )
    lone = _engine(str(tiny.tts_dir), str(tiny.voices_dir), 1)
    for (pcm, words), stream in zip(batched, STREAMS, strict=True):
        ((lone_pcm, lone_words),) = _run(lone, [(0, 0, stream)])
        assert words == lone_words
        assert pcm.shape == lone_pcm.shape
        np.testing.assert_allclose(pcm, lone_pcm, atol=1e-6)


@pytest.mark.parametrize(("second_voice", "differs"), [("tiny/other.wav", True), ("tiny/default.wav", False)])
def test_each_slot_speaks_with_its_own_voice(tiny, second_voice, differs):
    """Two slots, same words: the model sees different speakers only when the voices differ.

    Checked on the text logits: greedy decoding of random weights has margins wide enough
    that the tiny voices rarely flip a token, so the audio alone would not show it.
    """
    from services.tts.engines.base import SlotInput, StreamStart
    from services.tts.text import split_words

    engine = _engine(str(tiny.tts_dir), str(tiny.voices_dir), 2)
    logits = []
    engine.lm_gen.on_text_logits_hook = lambda x: logits.append(x[:, 0, 0].clone())
    words = split_words("one two three four five")
    engine.step(
        [
            SlotInput(0, StreamStart("tiny/default.wav", 2.0), list(words)),
            SlotInput(1, StreamStart(second_voice, 2.0), list(words)),
        ]
    )
    for _ in range(5):
        engine.step([])
    gap = max(float((x[0] - x[1]).abs().max()) for x in logits)
    assert (gap > 1e-2) if differs else (gap < 1e-5)


def test_model_and_voices_load_from_the_hf_cache(tiny, monkeypatch):
    import huggingface_hub.constants

    from devkit.checkpoints import TTS_REPO, TTS_VOICES_REPO

    stream = STREAMS[3]
    ((local, _),) = _run(_engine(str(tiny.tts_dir), str(tiny.voices_dir), 1), [(0, 0, stream)])
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tiny.hf_home / "hub"))
    engine = _engine(TTS_REPO, TTS_VOICES_REPO, 1)
    assert engine.voices() == ["tiny/default.wav", "tiny/other.wav"]
    ((cached, _),) = _run(engine, [(0, 0, stream)])
    np.testing.assert_allclose(cached, local, atol=1e-6)
