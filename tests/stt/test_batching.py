"""Batching never mixes slots: each stream gets, in a batch, what it gets alone.

The engine is driven directly (no network) so raw text tokens can be compared, with
greedy decoding (temp 0) in float32.

Two comparisons, because of one numerical fact found while writing them: a batch of 8
and a batch of 1 run different CPU kernels, so Mimi's latent differs in the last bits
(about 1e-7), and where a frame's latent lies almost exactly between two codebook
entries, that is enough to flip its code and everything the LM says after it.
- Slot isolation is checked exactly: a stream in a busy batch of 8 (other slots
  desynchronised, starting, ending and being reused) gets the very tokens it gets
  alone in a batch of 8 (same kernels, same slot).
- Batch size is checked within tolerance: Mimi latents of B=1 and B=8 agree within
  1e-5, and, fed the same codes, the LM's text logits agree within 1e-4.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.stt_client import FRAME, speechlike

pytestmark = pytest.mark.moshi


def cpu_engine(model: str, batch: int):
    """The moshi STT engine on `model`, on the CPU in float32 (what the tests compare exactly)."""
    from services.stt.engines.moshi_engine import MoshiSttEngine
    from services.stt.settings import SttSettings

    settings = SttSettings(
        model=model, batch_size=batch, device="cpu", dtype="float32", service_api_key="unused"
    )
    return MoshiSttEngine(settings)


def _frames(stream: np.ndarray) -> list[np.ndarray]:
    padded = np.concatenate([stream, np.zeros((-len(stream)) % FRAME, dtype=np.float32)])
    return list(padded.reshape(-1, FRAME))


def _run_alone(engine, stream: np.ndarray, slot: int = 0) -> list[tuple[int | None, list[float]]]:
    frames = [np.zeros(FRAME, dtype=np.float32)] * engine.prefix_frames + _frames(stream)
    active = np.zeros(engine.batch_size, dtype=bool)
    active[slot] = True
    batch = np.zeros((engine.batch_size, FRAME), dtype=np.float32)
    out = []
    for i, frame in enumerate(frames):
        batch[slot] = frame
        result = engine.step(batch, active, reset=[slot] if i == 0 else [])[slot]
        out.append((result.token, result.prs))
    return out


def _run_batched(engine, jobs: list[tuple[int, int, np.ndarray]]) -> dict[int, list]:
    """jobs: (slot, start_step, audio). Slots run desynchronised, some slots reused."""
    pending = {
        i: [np.zeros(FRAME, np.float32)] * engine.prefix_frames + _frames(a)
        for i, (_, _, a) in enumerate(jobs)
    }
    results: dict[int, list] = {i: [] for i in range(len(jobs))}
    step = 0
    while any(pending.values()):
        frames = np.zeros((engine.batch_size, FRAME), dtype=np.float32)
        active = np.zeros(engine.batch_size, dtype=bool)
        reset, owner = [], {}
        for i, (slot, start, _) in enumerate(jobs):
            if step < start or not pending[i] or active[slot]:
                continue
            if any(owner_i for owner_i, (s2, _, _) in enumerate(jobs[:i]) if s2 == slot and pending[owner_i]):
                continue  # the slot is still busy with an earlier stream
            if not results[i]:
                reset.append(slot)
            frames[slot] = pending[i].pop(0)
            active[slot] = True
            owner[slot] = i
        if active.any():
            out = engine.step(frames, active, reset)
            for slot, i in owner.items():
                results[i].append((out[slot].token, out[slot].prs))
        step += 1
    return results


def _assert_same(batched, alone):
    assert [t for t, _ in batched] == [t for t, _ in alone]
    np.testing.assert_allclose([p for _, p in batched], [p for _, p in alone], atol=1e-6)


@pytest.mark.parametrize("variant", ["stt_dir", "stt_noheads_dir"], ids=["eot-heads", "silero-vad"])
def test_eight_streams_match_their_lone_runs(tiny, variant):
    model = str(getattr(tiny, variant))
    lengths = [1.0, 2.5, 0.4, 3.2, 1.7, 2.0, 0.9, 2.8]
    # Eight streams start at different steps; slots 0 and 3 are reused by two more streams.
    jobs = [(i, 3 * i, speechlike(s, seed=i)) for i, s in enumerate(lengths)]
    jobs += [(0, 0, speechlike(1.3, seed=20)), (3, 0, speechlike(0.8, seed=21))]
    batched = _run_batched(cpu_engine(model, 8), jobs)
    lone = cpu_engine(model, 8)
    for i, (slot, _, audio) in enumerate(jobs):
        _assert_same(batched[i], _run_alone(lone, audio, slot))
    assert any(t not in (0, 3) for t, _ in batched[3]), "streams should contain word tokens"


def test_batch_size_changes_only_the_last_bits(tiny):
    import torch

    one, eight = cpu_engine(str(tiny.stt_dir), 1), cpu_engine(str(tiny.stt_dir), 8)
    mask = torch.zeros(8, dtype=torch.bool)
    mask[0] = True
    for engine, m in ((one, mask[:1]), (eight, mask)):
        engine.mimi.reset_streaming(m)
        engine.lm_gen.reset_streaming(m)
        engine.mimi.set_exec_mask(m)
        engine.lm_gen.set_exec_mask(m)
    logits: dict[int, list] = {1: [], 8: []}
    one.lm_gen.on_text_logits_hook = lambda x: logits[1].append(x[0, 0, 0].clone())
    eight.lm_gen.on_text_logits_hook = lambda x: logits[8].append(x[0, 0, 0].clone())
    with torch.no_grad():
        for frame in [np.zeros(FRAME, np.float32), *_frames(speechlike(2.0, seed=1))]:
            pcm = torch.from_numpy(frame)[None, None]
            lat1 = one.mimi.encode_to_latent(pcm, quantize=False)
            lat8 = eight.mimi.encode_to_latent(pcm.expand(8, 1, FRAME).contiguous(), quantize=False)
            torch.testing.assert_close(lat8[:1], lat1, atol=1e-5, rtol=0)
            codes = one.mimi.quantizer.encode(lat1)  # both LMs get the same codes
            one.lm_gen.step_with_extra_heads(codes)
            eight.lm_gen.step_with_extra_heads(codes.expand(8, -1, -1).contiguous())
    torch.testing.assert_close(torch.stack(logits[8]), torch.stack(logits[1]), atol=1e-4, rtol=0)


def test_hf_cache_and_local_directory_load_the_same_model(tiny, monkeypatch):
    from devkit.checkpoints import STT_REPO

    audio = speechlike(1.5, seed=5)
    local = _run_alone(cpu_engine(str(tiny.stt_dir), 1), audio)
    import huggingface_hub.constants

    # huggingface_hub reads HF_HOME at import; the service processes get it from their env.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tiny.hf_home / "hub"))
    cached = _run_alone(cpu_engine(STT_REPO, 1), audio)
    _assert_same(cached, local)


def test_missing_model_names_the_problem(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from services.common.checkpoint import CheckpointError, load_checkpoint_info

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(CheckpointError, match="prefetch"):
        load_checkpoint_info("unmute-slurm/not-there")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="lacks"):
        load_checkpoint_info(str(tmp_path / "half"))
