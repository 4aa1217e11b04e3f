"""Batched Silero pauses give what silero-vad's own ONNX model, fed by soxr, gives each stream alone.

The reference is the per-slot pipeline the engine used before the VAD was batched on the
model's device: each stream resampled to 16 kHz with soxr, every 512-sample window through
the packaged ONNX model with its own state and context, and the same silence bookkeeping.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch

from devkit import PHRASE_WAV
from kit.audio import FRAME_SIZE, SAMPLE_RATE, resample
from services.stt.engines.base import pause_probabilities

pytestmark = pytest.mark.moshi


def _onnx_session():
    import onnxruntime

    from services.stt.engines.silero_pauses import _jit_model_path

    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = 1
    path = _jit_model_path().with_name("silero_vad.onnx")
    return onnxruntime.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def _onnx_probs(session, audio_16k: np.ndarray, batch: int = 1) -> np.ndarray:
    """Silero's probability for every whole window of each row of `audio_16k` ([batch, n])."""
    from services.stt.engines.silero_pauses import CONTEXT, VAD_RATE, WINDOW

    state = np.zeros((2, batch, 128), dtype=np.float32)
    context = np.zeros((batch, CONTEXT), dtype=np.float32)
    out = []
    for k in range(audio_16k.shape[1] // WINDOW):
        window = audio_16k[:, k * WINDOW : (k + 1) * WINDOW].astype(np.float32)
        feed = {"input": np.concatenate([context, window], 1), "state": state, "sr": np.array(VAD_RATE)}
        prob, state = session.run(None, feed)
        context = window[:, -CONTEXT:]
        out.append(prob[:, 0])
    return np.array(out).T


def _speech() -> np.ndarray:
    audio, rate = soundfile.read(PHRASE_WAV, dtype="float32")
    return resample(audio, rate, SAMPLE_RATE)


def _streams() -> list[np.ndarray]:
    """Speech, quiet speech, noise and silences: windows on both sides of the threshold."""
    speech, rng = _speech(), np.random.default_rng(0)

    def silence(s: float) -> np.ndarray:
        return np.zeros(int(s * SAMPLE_RATE), dtype=np.float32)

    noisy = speech + rng.normal(0, 0.02, speech.size).astype(np.float32)
    streams = [
        [silence(0.3), speech, silence(1.0), 0.4 * speech, silence(2.0)],
        [noisy, silence(1.5)],
        [silence(1.0), 0.2 * speech, silence(0.7), speech],
        [rng.normal(0, 0.05, SAMPLE_RATE).astype(np.float32), speech, silence(1.2)],
    ]
    return [np.concatenate(parts).astype(np.float32) for parts in streams]


def _frames(stream: np.ndarray) -> np.ndarray:
    return np.concatenate([stream, np.zeros(-stream.size % FRAME_SIZE, np.float32)]).reshape(-1, FRAME_SIZE)


def _reference_prs(session, stream: np.ndarray) -> list[list[float]]:
    """Per frame of one stream alone: soxr, the ONNX model, the silence bookkeeping."""
    from services.stt.engines.silero_pauses import RESAMPLED, SPEECH_THRESHOLD, VAD_RATE, WINDOW, Resampler

    frames = _frames(stream)
    probs = _onnx_probs(session, resample(frames.reshape(-1), SAMPLE_RATE, VAD_RATE)[None])[0]
    silence, speech, seen, out = 0.0, 0.0, 0, []
    for n in range(1, len(frames) + 1):
        # Window k is complete once the frame holding its last sample (plus the filter's
        # look-ahead) is in.
        ready = min(len(probs), (RESAMPLED * n - Resampler.DELAY) // WINDOW)
        for p in probs[seen:ready]:
            speech = float(p)
            silence = 0.0 if speech >= SPEECH_THRESHOLD else silence + WINDOW / VAD_RATE
        seen = ready
        out.append(pause_probabilities(silence, speech))
    return out


def test_network_matches_the_packaged_onnx_model():
    from services.stt.engines.silero_pauses import CONTEXT, WINDOW, SileroNetwork

    speech_16k = resample(_speech(), SAMPLE_RATE, 16_000)
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 0.1, speech_16k.size)
    batch = np.stack([np.roll(speech_16k, 3000 * i) for i in range(3)] + [noise])
    want = _onnx_probs(_onnx_session(), batch, batch=len(batch))

    network = SileroNetwork()
    h = torch.zeros(len(batch), network.hidden)
    c = torch.zeros_like(h)
    context = torch.zeros(len(batch), CONTEXT)
    got = []
    with torch.no_grad():
        for k in range(want.shape[1]):
            window = torch.from_numpy(batch[:, k * WINDOW : (k + 1) * WINDOW]).float()
            prob, h, c = network(torch.cat([context, window], 1), h, c)
            context = window[:, -CONTEXT:]
            got.append(prob.numpy())
    np.testing.assert_allclose(np.array(got).T, want, atol=1e-4)
    assert (want > 0.9).any() and (want < 0.1).any()


def test_resampler_reproduces_soxr_for_each_slot():
    from services.stt.engines.silero_pauses import Resampler

    streams = [np.concatenate(_streams())[: 90 * FRAME_SIZE], _speech()[: 30 * FRAME_SIZE]]
    resampler = Resampler(len(streams))
    outputs: list[list[np.ndarray]] = [[] for _ in streams]
    step = 0
    while any(len(o) < len(s) // FRAME_SIZE for o, s in zip(outputs, streams, strict=True)):
        pcm = torch.zeros(len(streams), FRAME_SIZE)
        # Slot 1 skips every third step: its history must wait for its next frame.
        active = torch.tensor([len(o) < len(s) // FRAME_SIZE for o, s in zip(outputs, streams, strict=True)])
        active[1] &= step % 3 != 2
        for b, (o, s) in enumerate(zip(outputs, streams, strict=True)):
            if active[b]:
                pcm[b] = torch.from_numpy(s[len(o) * FRAME_SIZE : (len(o) + 1) * FRAME_SIZE])
        out = resampler(pcm, active)
        for b in np.flatnonzero(active.numpy()):
            outputs[b].append(out[b].numpy())
        step += 1
    for stream, out in zip(streams, outputs, strict=True):
        got = np.concatenate(out)[Resampler.DELAY :]
        want = resample(stream, SAMPLE_RATE, 16_000)[: got.size]
        assert np.sqrt(np.mean((got - want) ** 2)) < 1e-4 * np.sqrt(np.mean(want**2))


def test_batched_pauses_equal_each_stream_alone_through_soxr_and_onnx():
    """Four streams, desynchronised, with missing frames, one slot reused: each gets the prs of
    the reference pipeline run on it alone, to the 4 decimals sent."""
    from services.stt.engines.silero_pauses import SileroPauses

    streams = _streams()
    # (slot, first step, stream); slot 0 is reused by the last stream once its first one ends.
    jobs = [(0, 0, streams[0][: 40 * FRAME_SIZE]), (1, 3, streams[1]), (2, 5, streams[2]), (3, 1, streams[3])]
    jobs.append((0, 45, streams[0]))
    pending = {i: list(_frames(audio)) for i, (_, _, audio) in enumerate(jobs)}
    got: dict[int, list[list[float]]] = {i: [] for i in pending}
    vad = SileroPauses(4, torch.device("cpu"))
    rng = np.random.default_rng(2)
    step = 0
    while any(pending.values()):
        frames = np.zeros((4, FRAME_SIZE), dtype=np.float32)
        active = np.zeros(4, dtype=bool)
        owner, reset = {}, []
        for i, (slot, start, _) in enumerate(jobs):
            busy = any(pending[j] for j in range(i) if jobs[j][0] == slot)
            if step < start or not pending[i] or busy or rng.random() < 0.1:
                continue  # not started, finished, slot still taken, or no frame this step
            if not got[i]:
                reset.append(slot)
            frames[slot], active[slot], owner[slot] = pending[i].pop(0), True, i
        if reset:
            vad.reset(reset)
        with torch.no_grad():
            prs = vad.finish(vad.launch(torch.from_numpy(frames), active, torch.from_numpy(active)).numpy())
        for slot, i in owner.items():
            got[i].append(prs[slot].tolist())
        step += 1

    session = _onnx_session()
    for i, (_, _, audio) in enumerate(jobs):
        want = _reference_prs(session, audio)
        assert got[i] == want, f"stream {i}"
    every = [p for prs in got.values() for p in prs]
    assert any(p[2] >= 0.5 for p in every) and any(p[2] == 0 for p in every), "pauses and speech"
