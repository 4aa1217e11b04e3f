"""Pause probabilities from Silero VAD, for moshi STT models without end-of-turn heads.

The VAD runs batched over all slots as tensor ops on the STT model's own device, so a step
costs the same few dozen ops at batch 8 or 512 and nothing runs per slot on the host:

- `Resampler` takes every slot's 24 kHz frame to 1280 samples at 16 kHz in one matmul
  (a polyphase FIR that reproduces soxr's resampling, each slot with its own history);
- `SileroNetwork` is Silero VAD's 16 kHz network with the weights silero-vad packages, its
  convolutions written as matmuls (float32 on a GPU, never TF32); each call reads the next
  512-sample window of every slot that has one, with that slot's 64-sample context and
  recurrent state;
- the host keeps what is cheap and exact there: how many 16 kHz samples each slot has
  waiting, and the silence bookkeeping, updated from the probabilities the step copies back.

Each frame brings 1280 samples, so a slot has 2 or 3 windows per step: the step makes up to
3 batched network calls ("rounds"), each masked to the slots that have a window in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from kit.audio import FRAME_SIZE, SAMPLE_RATE
from services.stt.engines.base import pause_probabilities_array

VAD_RATE = 16_000
WINDOW = 512  # samples per Silero window at 16 kHz (32 ms)
CONTEXT = 64
SPEECH_THRESHOLD = 0.5
RESAMPLED = FRAME_SIZE * VAD_RATE // SAMPLE_RATE  # 1280 samples at 16 kHz per frame
MAX_ROUNDS = -(-(WINDOW - 1 + RESAMPLED) // WINDOW)  # windows one frame can complete: 3
# The slot's 16 kHz audio kept on the device: the longest wait plus a window's context.
AUDIO_KEPT = CONTEXT + WINDOW - 1 + RESAMPLED


def to_device(array: npt.NDArray, device: torch.device) -> torch.Tensor:
    """A host array on `device` without waiting for the device: on CUDA the copy is queued from
    pinned memory (a plain copy would synchronise the stream); on the CPU it is shared."""
    tensor = torch.from_numpy(array)
    if device.type != "cuda":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)


def _jit_model_path() -> Path:
    import silero_vad

    return Path(silero_vad.__file__).parent / "data" / "silero_vad.jit"


class SileroNetwork(torch.nn.Module):
    """Silero VAD 6's 16 kHz network for a batch of windows: STFT magnitudes, four
    convolutions, an LSTM cell, a sigmoid. Same weights and results as the packaged ONNX model
    (tests/stt/test_silero_pauses.py checks it)."""

    hidden = 128

    def __init__(self) -> None:
        super().__init__()
        packaged = torch.jit.load(str(_jit_model_path()), map_location="cpu")._model
        weights = {name: t.detach().float() for name, t in packaged.state_dict().items()}
        # [258, 1, 256] conv kernels -> [256, 258]: real parts of 129 bins, then imaginary parts.
        self.register_buffer("stft", weights["stft.forward_basis_buffer"][:, 0, :].T.contiguous())
        self.convs = []
        for i, stride in enumerate((1, 2, 2, 1)):
            w, b = weights[f"encoder.{i}.reparam_conv.weight"], weights[f"encoder.{i}.reparam_conv.bias"]
            self.register_buffer(f"conv{i}_w", w.flatten(1).T.contiguous())  # [cin * 3, cout]
            self.register_buffer(f"conv{i}_b", b)
            self.convs.append((f"conv{i}_w", f"conv{i}_b", stride))
        self.lstm = torch.nn.LSTMCell(self.hidden, self.hidden)
        rnn = {k.removeprefix("decoder.rnn."): v for k, v in weights.items() if k.startswith("decoder.rnn.")}
        self.lstm.load_state_dict(rnn)
        self.register_buffer("out_w", weights["decoder.decoder.2.weight"][:, :, 0].T.contiguous())
        self.register_buffer("out_b", weights["decoder.decoder.2.bias"])
        self.requires_grad_(False)

    def forward(
        self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: [n, CONTEXT + WINDOW] samples; h, c: [n, 128]. Returns speech probability [n] and h, c."""
        return self.recur(self.features(x), h, c)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The stateless front end, [n, CONTEXT + WINDOW] -> [n, 128]: windows in any order."""
        x = F.pad(x[:, None], (0, CONTEXT), mode="reflect")[:, 0]
        spectrum = x.unfold(1, 256, 128) @ self.stft  # [n, 4 frames, 258]
        bins = spectrum.shape[-1] // 2
        y = torch.sqrt(spectrum[..., :bins] ** 2 + spectrum[..., bins:] ** 2)  # [n, time, channels]
        for w, b, stride in self.convs:
            cols = F.pad(y, (0, 0, 1, 1)).unfold(1, 3, stride)  # [n, time, cin, 3]
            y = torch.relu(cols.flatten(2) @ getattr(self, w) + getattr(self, b))
        return y[:, 0]

    def recur(
        self, features: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The recurrent end: one window per row, in each stream's order."""
        h, c = self.lstm(features, (h, c))
        prob = torch.sigmoid(torch.relu(h) @ self.out_w + self.out_b)
        return prob[:, 0], h, c


class Resampler(torch.nn.Module):
    """24 kHz -> 16 kHz for every slot at once, each slot with its own input history.

    A Kaiser-windowed sinc low-pass at 48 kHz (up by 2, down by 3) applied as one matmul per
    block of outputs. Its band edges and window are chosen to reproduce soxr's default (HQ)
    resampling, which fed the VAD before: on speech the two agree to ~1e-6 rms. It is causal
    with a delay of exactly `DELAY` output samples; a slot's first `DELAY` outputs are dropped
    (SileroPauses starts each count at -DELAY), so the 16 kHz stream keeps the input's timing.
    """

    TAPS_HALF = 282  # a filter of 2 * 282 + 1 taps at 48 kHz
    DELAY = TAPS_HALF // 3  # the filter's delay in 16 kHz samples (282 is a multiple of 3)
    CUTOFF_HZ = 7655.0
    BETA = 12.3
    BLOCK = 32  # output pairs per matmul row

    def __init__(self, batch_size: int) -> None:
        super().__init__()
        n = np.arange(-self.TAPS_HALF, self.TAPS_HALF + 1)
        h = np.sinc(2 * self.CUTOFF_HZ / 48_000 * n) * np.kaiser(n.size, self.BETA)
        h *= 2 / h.sum()  # zero stuffing halves the level
        history = self.TAPS_HALF
        rows, cols = 3 * self.BLOCK + history, 2 * self.BLOCK
        # Output u of a block reads input q through tap 3u + 2*history - 2q (zero-stuffed taps drop out).
        tap = 3 * np.arange(cols)[None, :] + 2 * history - 2 * np.arange(rows)[:, None]
        matrix = np.where((tap >= 0) & (tap < h.size), h[np.clip(tap, 0, h.size - 1)], 0.0)
        self.register_buffer("matrix", torch.from_numpy(matrix.astype(np.float32)))
        self.register_buffer("history", torch.zeros(batch_size, history))

    def forward(self, pcm: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """pcm: [B, FRAME_SIZE] at 24 kHz; only active slots' histories advance. Returns [B, 1280]."""
        x = torch.cat([self.history, pcm], 1)
        self.history = torch.where(active[:, None], x[:, -self.history.shape[1] :], self.history)
        rows, step = self.matrix.shape[0], 3 * self.BLOCK
        return (x.unfold(1, rows, step) @ self.matrix).flatten(1)

    def reset(self, slots: torch.Tensor) -> None:
        """Silence before the new streams of these slots (indices, on the device)."""
        self.history.index_fill_(0, slots, 0.0)


class SileroPauses:
    """Batched Silero VAD turning each slot's frames into the 4 pause probabilities.

    `launch` queues a step's work on the device and returns its window probabilities (still
    on the device); `finish` takes them back on the host, as the engine's one copy, and
    updates the pause bookkeeping. Calls alternate: launch, finish, launch, ...
    """

    def __init__(self, batch_size: int, device: torch.device) -> None:
        self.batch_size = batch_size
        self.device = device
        self.resampler = Resampler(batch_size).to(device)
        self.network = SileroNetwork().to(device)
        self._audio = torch.zeros(batch_size, AUDIO_KEPT, device=device)
        self._h = torch.zeros(batch_size, self.network.hidden, device=device)
        self._c = torch.zeros_like(self._h)
        self._span = torch.arange(CONTEXT + WINDOW, device=device)
        self._pending = np.full(batch_size, -Resampler.DELAY, dtype=np.int64)  # 16 kHz samples waiting
        self._started = np.zeros(batch_size, dtype=bool)  # whether the stream has had a window yet
        self._in_round = np.zeros((0, batch_size), dtype=bool)
        self._silence_s = np.zeros(batch_size)
        self._speech_prob = np.zeros(batch_size)

    def reset(self, slots: Sequence[int]) -> None:
        """Forget everything about these slots (a new stream starts in each)."""
        slots = list(slots)
        # Only these rows are touched: at 512 slots a few streams start on most steps.
        index = to_device(np.array(slots, dtype=np.int64), self.device)
        self.resampler.reset(index)
        for state in (self._audio, self._h, self._c):
            state.index_fill_(0, index, 0.0)
        self._pending[slots] = -Resampler.DELAY
        self._started[slots] = False
        self._silence_s[slots] = 0.0
        self._speech_prob[slots] = 0.0

    def launch(
        self, pcm: torch.Tensor, active: npt.NDArray[np.bool_], active_mask: torch.Tensor
    ) -> torch.Tensor:
        """Queue one step for the active slots (`pcm`: [B, FRAME_SIZE] on the device, `active_mask`:
        `active` on the device). Returns [B, MAX_ROUNDS] window probabilities, 0 where none."""
        return self.compute(pcm, active_mask, to_device(self._plan(active), self.device))

    def _plan(self, active: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
        """Host bookkeeping of a step: which windows each slot completes, and where they start.

        Returns [rounds + 1, B]: per round, the start (context first) of each slot's window in
        the kept audio, -1 for none; last, whether each slot's first window this step follows
        earlier audio (a stream's very first window gets silence as its context, as Silero's
        own wrapper gives it).
        """
        pending = self._pending + np.where(active, RESAMPLED, 0)
        windows = np.maximum(pending, 0) // WINDOW
        rounds = np.arange(int(windows.max()))[:, None]
        self._in_round = rounds < windows
        starts = AUDIO_KEPT - pending + WINDOW * rounds - CONTEXT
        plan = np.concatenate([np.where(self._in_round, starts, -1), self._started[None]])
        self._pending = pending - WINDOW * windows
        self._started |= windows > 0
        return plan

    def compute(self, pcm: torch.Tensor, active_mask: torch.Tensor, plan: torch.Tensor) -> torch.Tensor:
        """The step's device work: resample, append, then the network on every window of `plan`:
        its front end for all rounds at once, its recurrent end round by round."""
        fresh = self.resampler(pcm, active_mask)
        kept = torch.cat([self._audio[:, RESAMPLED:], fresh], 1)
        self._audio = torch.where(active_mask[:, None], kept, self._audio)
        rounds, starts = plan.shape[0] - 1, plan[:-1]
        probs = torch.zeros(self.batch_size, MAX_ROUNDS, device=self.device)
        if rounds == 0:
            return probs
        index = starts.clamp(min=0)[:, :, None] + self._span  # [rounds, B, CONTEXT + WINDOW]
        x = self._audio[None].expand(rounds, -1, -1).gather(2, index)
        x[0, :, :CONTEXT] *= plan[-1][:, None]
        features = self.network.features(x.flatten(0, 1)).unflatten(0, (rounds, self.batch_size))
        for r in range(rounds):
            has = starts[r] >= 0
            prob, h, c = self.network.recur(features[r], self._h, self._c)
            self._h = torch.where(has[:, None], h, self._h)
            self._c = torch.where(has[:, None], c, self._c)
            probs[:, r] = torch.where(has, prob, 0.0)
        return probs

    def finish(self, probs: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
        """Take the step's window probabilities ([B, MAX_ROUNDS], on the host) in order, as
        each window would have been seen alone; returns every slot's prs [B, 4]."""
        for r, has in enumerate(self._in_round):
            prob = probs[has, r].astype(np.float64)
            self._speech_prob[has] = prob
            self._silence_s[has] = np.where(
                prob >= SPEECH_THRESHOLD, 0.0, self._silence_s[has] + WINDOW / VAD_RATE
            )
        return pause_probabilities_array(self._silence_s, self._speech_prob)
