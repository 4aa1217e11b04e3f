"""Kyutai STT through moshi: one `LMGen` and one Mimi with B streaming slots.

This is the pattern of Kyutai's own batched Python ASR (moshi-server batched_asr.py):
both modules stay in streaming mode for the life of the process, each step sets the
exec mask to the slots that have a frame, and a new stream resets only its own slot.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch
from moshi.models import LMGen
from moshi.models.loaders import CheckpointInfo
from moshi.modules.streaming import StreamingModule
from moshi.utils.compile import no_compile

from kit.audio import FRAME_RATE, frames_for
from services.common.checkpoint import load_checkpoint_info
from services.common.torch_device import resolve_device, resolve_dtype
from services.stt.engines.base import FrameResult, SttEngine, round_prs
from services.stt.engines.silero_pauses import SileroPauses, to_device
from services.stt.engines.words import SlotWordDecoders
from services.stt.settings import SttSettings

logger = logging.getLogger(__name__)

# DSM scripts use these when a config lacks stt_config keys.
DEFAULT_DELAY_S = 5.0
DEFAULT_PREFIX_S = 1.0
NO_TOKEN = -1  # the token column of a step whose LM output is not out yet


def _extra_heads_in_weights(path: os.PathLike[str]) -> int:
    """Number of end-of-turn heads stored in an LM checkpoint (stt-1b-en_fr-candle has 4)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return len({k.split(".")[1] for k in f.keys() if k.startswith("extra_heads.")})  # noqa: SIM118 (safe_open has no __iter__)


class MoshiSttEngine(SttEngine):
    """Batched Kyutai STT."""

    name = "moshi"

    def __init__(self, settings: SttSettings, checkpoint: CheckpointInfo | None = None) -> None:
        """The model is `settings.model`, unless a resolved `checkpoint` is given; one without
        weight files gets random weights (bench/gpu_capacity.py measures real sizes that way)."""
        batch_size = settings.batch_size
        self.batch_size = batch_size
        self.device = resolve_device(settings.device)
        info = checkpoint or load_checkpoint_info(settings.model)
        overrides = {}
        heads = _extra_heads_in_weights(info.moshi_weights) if info.moshi_weights else 0
        if heads and not (info.lm_config or {}).get("extra_heads_num_heads"):
            # The candle repo ships head weights its config does not declare.
            overrides = {"extra_heads_num_heads": heads, "extra_heads_dim": 6}
        self.mimi = info.get_mimi(device=self.device)
        self.lm = info.get_moshi(
            device=self.device,
            dtype=resolve_dtype(settings.dtype, self.device),
            lm_kwargs_overrides=overrides,
        )
        self.tokenizer = info.get_text_tokenizer()
        gen_config = {"temp": 0.0, "temp_text": 0.0} | dict(info.lm_gen_config)
        self.lm_gen = LMGen(self.lm, **gen_config)

        stt = info.stt_config
        self.delay_s = float(stt.get("audio_delay_seconds", DEFAULT_DELAY_S))
        prefix_s = float(stt.get("audio_silence_prefix_seconds", DEFAULT_PREFIX_S))
        self.delay_frames = frames_for(self.delay_s)
        # With all STT delays at 0, LMGen replaces the first frame of a stream by its
        # initial tokens, so that frame is never heard: a silent one goes first.
        self.prefix_frames = 1 + frames_for(prefix_s)

        self.has_heads = len(self.lm.extra_heads) > 0
        self.pause_source = "model heads" if self.has_heads else "silero-vad"
        #: Pause detection when the model has no end-of-turn heads (batched, on the model's device).
        self.silero = None if self.has_heads else SileroPauses(batch_size, self.device)

        # Speech recognition only encodes: Mimi's decoding half stays out of streaming mode, so
        # no step or stream reset walks or clears its per-slot state.
        for name in ("decoder", "decoder_transformer", "upsample"):
            part = getattr(self.mimi, name, None)
            if isinstance(part, StreamingModule):
                part.set_streaming_detached(True)
        self.mimi.streaming_forever(batch_size)
        self.lm_gen.streaming_forever(batch_size)
        self._frame_index = np.zeros(batch_size, dtype=np.int64)
        self._words = SlotWordDecoders(self.tokenizer.decode, batch_size)
        self._exec_mask: npt.NDArray[np.bool_] | None = None
        self._exec_mask_t = torch.ones(batch_size, dtype=torch.bool, device=self.device)
        logger.info(
            "moshi STT loaded",
            extra={
                "model": settings.model if checkpoint is None else "a resolved checkpoint",
                "device": str(self.device),
                "batch_size": batch_size,
                "delay_s": self.delay_s,
                "prefix_frames": self.prefix_frames,
                "pause_source": self.pause_source,
            },
        )

    def step(
        self, frames: npt.NDArray[np.float32], active: npt.NDArray[np.bool_], reset: Sequence[int]
    ) -> list[FrameResult | None]:
        """Encode one frame per active slot with Mimi and advance the LM by one step.

        All device work is queued first (`launch`), then one copy brings the step's outputs
        to the host (`collect`), where only whole-batch array work and word decoding remain.
        """
        return self.collect(self.launch(frames, active, reset), active)

    def launch(
        self, frames: npt.NDArray[np.float32], active: npt.NDArray[np.bool_], reset: Sequence[int]
    ) -> torch.Tensor:
        """Queue the step's device work (stream resets, Mimi, LM, VAD) without waiting for it.

        Returns [B, 5 or 4] float64 on the device: each slot's text token (-1 while the LM has
        none), then its 4 end-of-turn head probabilities or its Silero window probabilities.
        Every launch must be collected before the next one. A caller timing the device part
        (CUDA events) can record around this call, then `collect`.
        """
        with self._guard(), torch.no_grad():
            return self._launch(frames, active, reset)

    def collect(self, outputs: torch.Tensor, active: npt.NDArray[np.bool_]) -> list[FrameResult | None]:
        """A launched step's per-slot results: one copy to the host (the step's only wait for the
        device), whole-batch array work, then one object per active slot."""
        host = outputs.cpu().numpy()
        tokens = host[:, 0].astype(np.int64)
        prs = host[:, 1:] if self.silero is None else self.silero.finish(host[:, 1:])
        times_s = (self._frame_index - self.prefix_frames) / FRAME_RATE - self.delay_s
        self._frame_index[active] += 1
        has_tokens = bool(tokens[0] != NO_TOKEN)
        events = self._words.push(tokens, times_s, active) if has_tokens else {}
        rows = round_prs(prs).tolist()
        token_list = tokens.tolist() if has_tokens else [None] * self.batch_size
        results: list[FrameResult | None] = [None] * self.batch_size
        for b in np.flatnonzero(active).tolist():
            results[b] = FrameResult(prs=rows[b], events=events.get(b, []), token=token_list[b])
        return results

    def _guard(self) -> contextlib.AbstractContextManager[None]:
        # torch.compile on CPU costs seconds per shape and gains nothing at these sizes;
        # moshi's own switch turns it off without needing NO_TORCH_COMPILE in the env.
        return no_compile() if self.device.type == "cpu" else contextlib.nullcontext()

    def _launch(
        self, frames: npt.NDArray[np.float32], active: npt.NDArray[np.bool_], reset: Sequence[int]
    ) -> torch.Tensor:
        if reset:
            reset_np = np.zeros(self.batch_size, dtype=bool)
            reset_np[list(reset)] = True
            reset_mask = to_device(reset_np, self.device)
            self.lm_gen.reset_streaming(reset_mask)
            self.mimi.reset_streaming(reset_mask)
            self._frame_index[list(reset)] = 0
            self._words.reset(reset)
            if self.silero is not None:
                self.silero.reset(reset)
        # Setting the exec mask walks every streaming module; a reset also touches it.
        if reset or self._exec_mask is None or not np.array_equal(active, self._exec_mask):
            self._exec_mask = active.copy()
            self._exec_mask_t = to_device(self._exec_mask, self.device)
            self.lm_gen.set_exec_mask(self._exec_mask_t)
            self.mimi.set_exec_mask(self._exec_mask_t)
        pcm = to_device(frames, self.device)
        codes = self.mimi.encode(pcm[:, None, :])
        if self.has_heads:
            out = self.lm_gen.step_with_extra_heads(codes)
            tokens = None if out is None else out[0]
            pauses = (
                torch.zeros(self.batch_size, len(self.lm.extra_heads), device=self.device)
                if out is None
                else torch.stack([head[:, 0, 0] for head in out[1]], 1)
            )
        else:
            assert self.silero is not None
            tokens = self.lm_gen.step(codes)
            pauses = self.silero.launch(pcm, active, self._exec_mask_t)
        token = (
            torch.full((self.batch_size, 1), NO_TOKEN, device=self.device)
            if tokens is None
            else tokens[:, 0, :]
        )
        return torch.cat([token.double(), pauses.double()], 1)
