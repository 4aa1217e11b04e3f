"""STT service settings: ``STT_*`` variables, `.env`, or command-line flags."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


class SttSettings(ServiceSettings):
    """Everything `python -m services.stt` can be told."""

    model_config = SettingsConfigDict(
        env_prefix="STT_", env_file=".env", extra="ignore", populate_by_name=True, env_ignore_empty=True
    )

    port: int = Field(3001, ge=0, le=65535)
    engine: Literal["moshi", "sphinx"] = Field(
        "moshi", description="moshi: Kyutai STT; sphinx: CPU lite engine."
    )
    model: str = Field(
        "kyutai/stt-1b-en_fr",
        description="HF repo id (resolved from the HF cache) or a local checkpoint directory.",
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
    transcribe_max_s: float = Field(600.0, gt=0, description="Longest file POST /v1/transcribe accepts.")
    transcribe_wait_s: float = Field(
        30.0, ge=0, description="How long POST /v1/transcribe waits for a free slot."
    )
