"""TTS service settings: ``TTS_*`` variables, `.env`, or command-line flags."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


class TtsSettings(ServiceSettings):
    """Everything `python -m services.tts` can be told."""

    model_config = SettingsConfigDict(
        env_prefix="TTS_", env_file=".env", extra="ignore", populate_by_name=True, env_ignore_empty=True
    )

    port: int = Field(3003, ge=0, le=65535)
    engine: Literal["moshi", "espeak"] = Field("moshi", description="moshi: Kyutai TTS; espeak: CPU lite.")
    model: str = Field("kyutai/tts-1.6b-en_fr", description="HF repo id or local checkpoint directory.")
    voice: str | None = Field(
        None,
        description="Default voice: a name in the voice repo (moshi; default "
        "expresso/ex03-ex01_happy_001_channel1_334s.wav) or an espeak-ng voice (espeak; default en-us).",
    )
    voice_repo: str = Field(
        "kyutai/tts-voices", description="HF repo id or local directory holding the voice embeddings."
    )
    batch_size: int = Field(4, ge=1, le=256, description="Concurrent streams (fixed model slots).")
    device: str = Field("auto", description="cuda, cpu, or auto (cuda when available).")
    dtype: Literal["auto", "bfloat16", "float32"] = Field(
        "auto", description="auto: bf16 on cuda, fp32 on cpu."
    )
    temperature: float = Field(0.6, ge=0.0, le=2.0, description="Sampling temperature; 0 is greedy.")
    cfg_alpha: float = Field(2.0, description="Default CFG strength (distilled models: 1.0 to 4.0 by 0.5).")
    n_q: int = Field(32, ge=1, le=32, description="Audio codebooks generated (fewer is faster, rougher).")
    padding_between: int = Field(1, ge=0, le=8, description="Forced pad steps between words (articulation).")
    max_text_chars: int = Field(4000, gt=0, description="Most text one stream or request may send.")
    idle_timeout_s: float = Field(30.0, gt=0, description="Close a stream that sends nothing for this long.")
    synthesize_wait_s: float = Field(
        30.0, ge=0, description="How long POST /synthesize waits for a free slot."
    )
