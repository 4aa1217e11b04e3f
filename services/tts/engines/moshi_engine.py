"""Kyutai TTS through moshi, words streamed in, audio streamed out, B slots batched.

One `LMGen` and one Mimi stay in streaming mode with B slots. Each slot carries its own
delayed-streams state machine (moshi's `StateMachine`/`State`), its own voice (the
speaker cross-attention keys and values of its row) and its own CFG strength (its row
of the summed conditions). A slot steps only while it holds enough words for the
model's text look-ahead, or once the client has sent `Eos`; audio frames are decoded
by Mimi as soon as the acoustic delay has passed. This follows the structure of Kyutai's
batched Python TTS service (moshi-server's tts.py).

A new stream spends its first `delay_steps` (16 for tts-1.6b) inside the text-to-audio
delay, where its audio is forced to silence: it needs the main transformer only. While
other slots speak, every step of the batch also runs the depformer and Mimi, so such a
stream would wait that many full steps for its first audio. Within `catchup_ms` per step,
extra text-only steps advance just the streams still in their delay (a masked step of the
main transformer, no depformer, no Mimi): their first audio comes sooner, and what they
say is unchanged, since a slot's tokens depend only on its own row.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from moshi.models import LMGen
from moshi.models.loaders import CheckpointInfo
from moshi.models.tts import Entry, State, TTSModel, script_to_entries
from moshi.modules.transformer import StreamingMultiheadAttention
from moshi.utils.compile import no_compile
from safetensors.torch import save_file

from kit.audio import FRAME_RATE
from kit.protocol import TextOut
from services.common.checkpoint import load_checkpoint_info
from services.common.torch_device import resolve_device, resolve_dtype
from services.tts.engines.base import SlotInput, SlotOutput, StepResult, TtsEngine, VoiceError
from services.tts.engines.voices import VoiceCatalogue
from services.tts.settings import TtsSettings
from services.tts.text import Word

logger = logging.getLogger(__name__)

DEFAULT_VOICE = "expresso/ex03-ex01_happy_001_channel1_334s.wav"  # Kyutai's own default
MAX_STEPS = 30_000  # TTSModel.max_gen_length: 40 minutes of audio ends any stream


@dataclass
class _Slot:
    """One stream's generation state."""

    state: State | None = None
    offset: int = 0
    eos: bool = False
    words_queued: int = 0
    transcript_seen: int = 0
    pending_word: tuple[str, int] | None = None  # last consumed word, sent once the next starts

    def can_step(self, lookahead: int) -> bool:
        """True when a step would not starve the model's text look-ahead."""
        state = self.state
        if state is None:
            return False
        if self.eos:
            return True
        if not state.entries:
            return False
        if lookahead == 0 or not state.entries[0].tokens:
            return True
        # Stops at the first lookahead + 1 words: a long reply queued at once costs no more.
        worded = (e for e in state.entries if e.tokens)
        return sum(1 for _ in itertools.islice(worded, lookahead + 1)) > lookahead


def torch_compile_enabled() -> bool:
    """moshi's own rule (`torch_compile_lazy`): torch.compile is on unless NO_TORCH_COMPILE is set."""
    return not os.environ.get("NO_TORCH_COMPILE")


def check_compile(device: torch.device) -> None:
    """Refuse torch.compile on CUDA, which this engine cannot run.

    The constructor's warm-up step runs uncompiled, and it is the step moshi's CUDA graphs
    take as their warm-up: the first compilation then happens inside a graph capture, where
    inductor's autotuning synchronises the device and fails with "operation not permitted
    when stream is capturing" (seen with torch 2.11 on an H200; inductor autotunes the same
    way in the images' torch 2.9.1).
    """
    if device.type == "cuda" and torch_compile_enabled():
        raise ValueError(
            f"the moshi TTS engine does not run on CUDA with torch.compile on (torch {torch.__version__}, "
            "NO_TORCH_COMPILE unset): the first compilation would happen inside a CUDA graph capture "
            "and fail. Set NO_TORCH_COMPILE=1, as the container images do."
        )


class MoshiTtsEngine(TtsEngine):
    """Batched Kyutai TTS."""

    name = "moshi"

    def __init__(self, settings: TtsSettings, checkpoint: CheckpointInfo | None = None) -> None:
        """The model is `settings.model`, unless a resolved `checkpoint` is given; one without
        weight files gets random weights (bench/gpu_capacity.py measures real sizes that way)."""
        self.batch_size = settings.batch_size
        self.device = resolve_device(settings.device)
        check_compile(self.device)  # before minutes of loading
        self.catchup_s = settings.catchup_ms / 1000
        info = checkpoint or load_checkpoint_info(settings.model)
        self.tts = TTSModel.from_checkpoint_info(
            info,
            n_q=settings.n_q,
            temp=settings.temperature,
            device=self.device,
            dtype=resolve_dtype(settings.dtype, self.device),
            voice_repo=settings.voice_repo,
        )
        lm = self.tts.lm
        if not self.tts.multistream:
            lm.dep_q = self.tts.n_q  # generate only the codebooks asked for, as TTSModel.generate does
        self.machine = self.tts.machine
        self.padding_between = settings.padding_between
        self.cfg_values = sorted(self.tts.valid_cfg_conditionings)
        self.default_cfg = settings.cfg_alpha if self.cfg_values else None
        if self.default_cfg is not None:
            self.check_cfg_alpha(self.default_cfg)

        self.catalogue = (
            VoiceCatalogue(settings.voice_repo, self.tts.voice_suffix) if self.tts.multi_speaker else None
        )
        self.default_voice = (settings.voice or DEFAULT_VOICE) if self.catalogue is not None else ""
        if self.catalogue is not None:
            self.check_voice(self.default_voice)

        provider = lm.condition_provider
        assert provider is not None and lm.fuser is not None
        speaker = dict(provider.conditioners.items()).get("speaker_wavs")  # a ModuleDict has no get()
        self.embedding_dim: int | None = getattr(speaker, "dim", None)
        default = self._attributes(self.default_voice, self.default_cfg)
        conditions = provider.prepare_and_provide([default] * self.batch_size)
        self.lm_gen = LMGen(
            lm,
            temp=self.tts.temp,
            temp_text=self.tts.temp,
            cfg_coef=1.0,  # distilled models take CFG as a condition, not as a second batch
            condition_tensors=conditions,
            on_text_hook=self._on_text,
            on_audio_hook=self._on_audio,
            support_out_of_sync=True,  # slots start and stop independently
        )
        self.lm_gen.streaming_forever(self.batch_size)
        self.tts.mimi.streaming_forever(self.batch_size)
        self._cross = [
            m for m in lm.modules() if isinstance(m, StreamingMultiheadAttention) and m.cross_attention
        ]
        self._input = torch.full(
            (self.batch_size, lm.n_q - lm.dep_q, 1),
            self.machine.token_ids.zero,
            dtype=torch.long,
            device=self.device,
        )
        self._no_depformer = torch.full(
            (self.batch_size, lm.dep_q, 1), self.machine.token_ids.zero, dtype=torch.long, device=self.device
        )
        self._voice_sources: dict[str, torch.Tensor] = {}
        self._cfg_sums: dict[float | None, torch.Tensor] = {}
        self._slots = [_Slot() for _ in range(self.batch_size)]
        self._stepping = np.zeros(self.batch_size, dtype=bool)
        self.audio_start = self.tts.delay_steps + self.lm_gen.max_delay  # steps before the first frame
        with no_compile(), torch.no_grad():
            # One masked step makes every attention layer cache its cross-attention keys,
            # which per-slot voices then overwrite row by row.
            self.lm_gen.set_exec_mask(torch.zeros(self.batch_size, dtype=torch.bool))
            self.lm_gen.step(self._input)
        logger.info(
            "moshi TTS loaded",
            extra={
                "model": settings.model,
                "device": str(self.device),
                "batch_size": self.batch_size,
                "voices": len(self.voices()),
                "cfg_values": self.cfg_values,
            },
        )

    # ---- voices and conditions ------------------------------------------------------

    def voices(self) -> list[str]:
        """Voice names in the voice repo for this model (none for single-voice models)."""
        return self.catalogue.names() if self.catalogue is not None else []

    def check_voice(self, voice: str) -> None:
        """Unknown voices are an error (moshi-server silently falls back; clients deserve better)."""
        if self.catalogue is None:
            if voice:
                raise VoiceError(f"model {self.tts.voice_repo!r} has a single built-in voice; got {voice!r}")
            return
        self.catalogue.path(voice)

    def check_embedding(self, embedding: np.ndarray) -> None:
        """A client's embedding must have the width of this model's voice embeddings."""
        if self.catalogue is None or self.embedding_dim is None:
            raise VoiceError("this model has a single built-in voice; it takes no embedding")
        if embedding.shape[1] != self.embedding_dim:
            raise VoiceError(
                f"this model's voice embeddings are [1, {self.embedding_dim}, frames], "
                f"got {list(embedding.shape)}"
            )

    def check_cfg_alpha(self, cfg_alpha: float) -> None:
        """Distilled models accept only the CFG values they were trained with."""
        if self.cfg_values and cfg_alpha not in self.cfg_values:
            raise ValueError(
                f"cfg_alpha {cfg_alpha} not supported; use one of {', '.join(map(str, self.cfg_values))}"
            )

    def _attributes(self, voice: str | Path, cfg: float | None):
        voices = []
        if self.catalogue is not None:
            voices = [voice if isinstance(voice, Path) else self.catalogue.path(voice)]
        return self.tts.make_condition_attributes(voices, cfg_coef=cfg)

    def _voice_source(self, voice: str | np.ndarray) -> torch.Tensor:
        """Cross-attention source of a named voice (cached) or of a client's embedding."""
        if isinstance(voice, str) and voice in self._voice_sources:
            return self._voice_sources[voice]
        with contextlib.ExitStack() as stack:
            if isinstance(voice, str):
                attributes = self._attributes(voice, self.default_cfg)
            else:
                # make_condition_attributes reads voices from files; a client's embedding
                # goes through a temporary one so both take the same path.
                tmp = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "voice.safetensors"
                save_file({"speaker_wavs": torch.from_numpy(voice)}, str(tmp))
                attributes = self._attributes(tmp, self.default_cfg)
            provider, fuser = self.tts.lm.condition_provider, self.tts.lm.fuser
            assert provider is not None and fuser is not None
            cross = fuser.get_cross(provider.prepare_and_provide([attributes]))
        assert cross is not None
        source = cross.to(device=self.device, dtype=self.tts.lm.dtype)
        if isinstance(voice, str):
            self._voice_sources[voice] = source
        return source

    def _cfg_sum(self, cfg: float | None) -> torch.Tensor:
        if cfg not in self._cfg_sums:
            provider, fuser = self.tts.lm.condition_provider, self.tts.lm.fuser
            assert provider is not None and fuser is not None
            # The summed conditions (cfg, control) do not depend on the voice.
            attributes = self._attributes(self.default_voice, cfg)
            total = fuser.get_sum(provider.prepare_and_provide([attributes]))
            assert total is not None
            self._cfg_sums[cfg] = total.to(device=self.device, dtype=self.tts.lm.dtype)
        return self._cfg_sums[cfg]

    def _start(self, slot: int, voice: str | np.ndarray, cfg: float | None) -> None:
        """Give `slot` its voice and CFG row; its generation state is reset by the caller."""
        index = torch.tensor([slot], device=self.device)
        if self.catalogue is not None:
            source = self._voice_source(voice)
            for attention in self._cross:
                k, v = attention._compute_cross_attention(source, source)
                state = attention._streaming_state
                assert state is not None and state.k_cross is not None and state.v_cross is not None
                state.k_cross.index_copy_(0, index, k)
                state.v_cross.index_copy_(0, index, v)
        gen_state = self.lm_gen._streaming_state
        if gen_state is not None and gen_state.condition_sum is not None:
            gen_state.condition_sum.index_copy_(0, index, self._cfg_sum(cfg))

    # ---- text ---------------------------------------------------------------------------

    def _entry(self, slot: _Slot, word: Word) -> Entry:
        if not word.text:
            return Entry(tokens=[], text="", padding=max(1, round(word.pause_s * FRAME_RATE)))
        (entry,) = script_to_entries(
            self.tts.tokenizer,
            self.machine.token_ids,
            FRAME_RATE,
            [word.text],
            # The speaker token opens the first word of a stream only.
            multi_speaker=self.tts.multi_speaker and slot.words_queued == 0,
            padding_between=self.padding_between,
        )
        slot.words_queued += 1
        return entry

    # ---- the step -----------------------------------------------------------------------

    def _on_text(self, tokens: torch.Tensor) -> None:
        values = tokens.tolist()
        for b in np.flatnonzero(self._stepping):
            slot = self._slots[b]
            assert slot.state is not None
            values[b], _ = self.machine.process(slot.offset, slot.state, values[b])
        tokens[:] = torch.tensor(values, dtype=torch.long, device=tokens.device)

    def _on_audio(self, audio: torch.Tensor) -> None:
        # Audio before the text-to-audio delay (plus each codebook's own delay) is silence.
        state = self.lm_gen._streaming_state
        assert state is not None
        delays = self.lm_gen.delays_cuda[1 : 1 + self.tts.lm.dep_q]
        audio.masked_fill_(
            state.offsets[:, None] < delays + self.tts.delay_steps, self.machine.token_ids.zero
        )

    def step(self, inputs: Sequence[SlotInput]) -> StepResult:
        """Apply new streams, words and Eos, then advance every slot that can go on."""
        device_is_cpu = self.device.type == "cpu"
        with no_compile() if device_is_cpu else contextlib.nullcontext(), torch.no_grad():
            return self._step(inputs)

    def _step(self, inputs: Sequence[SlotInput]) -> StepResult:
        outputs: dict[int, SlotOutput] = {}
        reset = torch.zeros(self.batch_size, dtype=torch.bool)
        for item in inputs:
            try:
                self._apply(item, outputs, reset)
            except Exception as exc:
                # One stream's voice or text must not end the others: only this slot stops.
                self._slots[item.slot] = _Slot()
                if isinstance(exc, VoiceError):
                    error = f"cannot use this voice: {exc}"
                else:
                    logger.exception("TTS input failed; that stream was ended", extra={"slot": item.slot})
                    error = f"speech synthesis failed for this stream: {exc}"
                outputs[item.slot] = SlotOutput(done=True, error=error)
        if reset.any():
            self.lm_gen.reset_streaming(reset.to(self.device))
            self.tts.mimi.reset_streaming(reset.to(self.device))

        stepping = self._can_step()
        if not stepping.any():
            return StepResult(outputs, progressed=False)
        self._advance(stepping, outputs)
        self._catch_up(outputs)
        return StepResult(outputs, progressed=True)

    def _can_step(self, in_delay_only: bool = False) -> np.ndarray:
        """Slots that can take a step (only those still inside the text-to-audio delay)."""
        lookahead = self.machine.second_stream_ahead
        return np.array(
            [
                s.can_step(lookahead) and (not in_delay_only or s.offset < self.tts.delay_steps)
                for s in self._slots
            ]
        )

    def _catch_up(self, outputs: dict[int, SlotOutput]) -> None:
        """Text-only steps for the streams still inside their delay, while the budget lasts
        (the last one may overrun it by one such step)."""
        deadline = time.perf_counter() + self.catchup_s
        while time.perf_counter() < deadline:
            catching = self._can_step(in_delay_only=True)
            if not catching.any():
                return
            self._advance(catching, outputs)

    def _advance(self, stepping: np.ndarray, outputs: dict[int, SlotOutput]) -> None:
        """One model step of the `stepping` slots, decoding the audio of those past the delay."""
        self._stepping = stepping
        offsets = np.array([s.offset for s in self._slots])
        decoding = stepping & (offsets >= self.audio_start)
        text_only = not (stepping & (offsets >= self.tts.delay_steps)).any()
        self.lm_gen.set_exec_mask(torch.from_numpy(stepping).to(self.device))
        # While every stepping slot is still inside the text-to-audio delay, its audio is
        # forced to silence anyway: skip the depformer, as moshi's own generate() does.
        frame = self.lm_gen.step(
            self._input, depformer_replace_tokens=self._no_depformer if text_only else None
        )
        assert frame is not None
        pcm = None
        if decoding.any():
            self.tts.mimi.set_exec_mask(torch.from_numpy(decoding).to(self.device))
            pcm = self.tts.mimi.decode(frame[:, 1:].clamp(min=0)).clamp(-0.99, 0.99).float().cpu().numpy()

        for b in np.flatnonzero(stepping):
            slot = self._slots[b]
            out = outputs.setdefault(int(b), SlotOutput())
            if pcm is not None and decoding[b]:
                out.frames.append(pcm[b, 0].copy())
            slot.offset += 1
            out.words.extend(self._timed_words(slot))
            state = slot.state
            assert state is not None
            end = (
                None if state.end_step is None else state.end_step + self.audio_start + self.tts.final_padding
            )
            if (slot.eos and end is not None and slot.offset >= end) or slot.offset >= MAX_STEPS:
                out.words.extend(self._timed_words(slot, final=True))
                out.done = True
                self._slots[b] = _Slot()

    def _apply(self, item: SlotInput, outputs: dict[int, SlotOutput], reset: torch.Tensor) -> None:
        """Take one slot's new stream, words and Eos."""
        slot = self._slots[item.slot]
        if item.start is not None:
            self._slots[item.slot] = _Slot()
            try:
                self._start(item.slot, item.start.voice, item.start.cfg_alpha)
            except (ValueError, RuntimeError) as exc:  # e.g. an embedding whose shape the model refuses
                raise VoiceError(str(exc)) from exc
            self._slots[item.slot] = slot = _Slot(state=self.machine.new_state([]))
            reset[item.slot] = True
        if item.stop:
            self._slots[item.slot] = _Slot()
            return
        if slot.state is None:
            return
        slot.state.entries.extend(self._entry(slot, w) for w in item.words)
        if item.eos:
            slot.eos = True
            if slot.words_queued == 0:
                # Eos before any word: nothing to say, the stream ends at once.
                outputs[item.slot] = SlotOutput(done=True)
                self._slots[item.slot] = _Slot()

    def _timed_words(self, slot: _Slot, final: bool = False) -> list[TextOut]:
        """Words whose end is now known, timed on the output audio (step / 12.5 s).

        A word's stop is the step at which the next word starts (moshi-server sends a word's
        `Text` then too); the last one stops where the text ran out.
        """
        assert slot.state is not None
        out = []
        for text, step in slot.state.transcript[slot.transcript_seen :]:
            if slot.pending_word is not None:
                out.append(self._text_out(slot.pending_word, step))
            slot.pending_word = (text, step)
        slot.transcript_seen = len(slot.state.transcript)
        if final and slot.pending_word is not None:
            stop = slot.state.end_step if slot.state.end_step is not None else slot.offset
            out.append(self._text_out(slot.pending_word, stop))
            slot.pending_word = None
        return out

    @staticmethod
    def _text_out(word: tuple[str, int], stop_step: int) -> TextOut:
        return TextOut(
            text=word[0], start_s=round(word[1] / FRAME_RATE, 3), stop_s=round(stop_step / FRAME_RATE, 3)
        )
