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
from moshi.utils.compile import no_compile

from services.common.audio import FRAME_RATE, frames_for
from services.common.checkpoint import load_checkpoint_info
from services.stt.engines.base import FrameResult, SttEngine
from services.stt.engines.silero_pauses import SileroPauses
from services.stt.engines.words import WordDecoder

logger = logging.getLogger(__name__)

# DSM scripts use these when a config lacks stt_config keys.
DEFAULT_DELAY_S = 5.0
DEFAULT_PREFIX_S = 1.0


def resolve_device(device: str) -> torch.device:
    """`auto` picks CUDA when present."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """`auto` is bf16 on CUDA (as Kyutai serves it) and fp32 on CPU (bf16 matmuls are slow there)."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, dtype)


def _extra_heads_in_weights(path: os.PathLike[str]) -> int:
    """Number of end-of-turn heads stored in an LM checkpoint (stt-1b-en_fr-candle has 4)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return len({k.split(".")[1] for k in f.keys() if k.startswith("extra_heads.")})  # noqa: SIM118 (safe_open has no __iter__)


class MoshiSttEngine(SttEngine):
    """Batched Kyutai STT."""

    name = "moshi"

    def __init__(
        self, model: str | CheckpointInfo, batch_size: int, device: str = "auto", dtype: str = "auto"
    ) -> None:
        """`model` is a repo id or directory, or a resolved checkpoint; one without weight files
        gets random weights (bench/gpu_capacity.py measures real model sizes that way)."""
        self.batch_size = batch_size
        self.device = resolve_device(device)
        info = model if isinstance(model, CheckpointInfo) else load_checkpoint_info(model)
        overrides = {}
        heads = _extra_heads_in_weights(info.moshi_weights) if info.moshi_weights else 0
        if heads and not (info.lm_config or {}).get("extra_heads_num_heads"):
            # The candle repo ships head weights its config does not declare.
            overrides = {"extra_heads_num_heads": heads, "extra_heads_dim": 6}
        self.mimi = info.get_mimi(device=self.device)
        self.lm = info.get_moshi(
            device=self.device, dtype=resolve_dtype(dtype, self.device), lm_kwargs_overrides=overrides
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
        self._silero = None if self.has_heads else SileroPauses(batch_size)

        self.mimi.streaming_forever(batch_size)
        self.lm_gen.streaming_forever(batch_size)
        self._frame_index = np.zeros(batch_size, dtype=np.int64)
        self._decoders = [self._new_decoder() for _ in range(batch_size)]
        logger.info(
            "moshi STT loaded",
            extra={
                "model": model if isinstance(model, str) else "random weights",
                "device": str(self.device),
                "batch_size": batch_size,
                "delay_s": self.delay_s,
                "prefix_frames": self.prefix_frames,
                "pause_source": self.pause_source,
            },
        )

    def _new_decoder(self) -> WordDecoder:
        return WordDecoder(self.tokenizer.decode)

    def step(
        self, frames: npt.NDArray[np.float32], active: npt.NDArray[np.bool_], reset: Sequence[int]
    ) -> list[FrameResult | None]:
        """Encode one frame per active slot with Mimi and advance the LM by one step."""
        # torch.compile on CPU costs seconds per shape and gains nothing at these sizes;
        # moshi's own switch turns it off without needing NO_TORCH_COMPILE in the env.
        guard = no_compile() if self.device.type == "cpu" else contextlib.nullcontext()
        with guard, torch.no_grad():
            return self._step(frames, active, reset)

    def _step(
        self, frames: npt.NDArray[np.float32], active: npt.NDArray[np.bool_], reset: Sequence[int]
    ) -> list[FrameResult | None]:
        if reset:
            reset_mask = torch.zeros(self.batch_size, dtype=torch.bool, device=self.device)
            reset_mask[list(reset)] = True
            self.lm_gen.reset_streaming(reset_mask)
            self.mimi.reset_streaming(reset_mask)
            for b in reset:
                self._frame_index[b] = 0
                self._decoders[b] = self._new_decoder()
            if self._silero is not None:
                self._silero.reset(reset)
        mask = torch.from_numpy(active).to(self.device)
        self.lm_gen.set_exec_mask(mask)
        self.mimi.set_exec_mask(mask)
        pcm = torch.from_numpy(frames).to(self.device)[:, None, :]
        codes = self.mimi.encode(pcm)
        if self.has_heads:
            out = self.lm_gen.step_with_extra_heads(codes)
            tokens = None if out is None else out[0]
            prs = (
                None
                if out is None
                else torch.stack(out[1], 0)[:, :, 0, 0].transpose(0, 1).float().cpu().numpy()
            )
        else:
            tokens = self.lm_gen.step(codes)
            prs = None
        silero_prs = self._silero.step(frames, active) if self._silero is not None else None
        token_ids = None if tokens is None else tokens[:, 0, 0].cpu().numpy()

        results: list[FrameResult | None] = []
        for b in range(self.batch_size):
            if not active[b]:
                results.append(None)
                continue
            frame = int(self._frame_index[b])
            self._frame_index[b] += 1
            slot_prs = silero_prs[b] if silero_prs is not None else ([] if prs is None else prs[b].tolist())
            result = FrameResult(prs=[round(float(p), 4) for p in slot_prs] or [0.0] * 4)
            if token_ids is not None:
                time_s = (frame - self.prefix_frames) / FRAME_RATE - self.delay_s
                result.token = int(token_ids[b])
                result.events = self._decoders[b].push(result.token, time_s)
            results.append(result)
        return results
