"""TTS service settings: ``TTS_*`` variables, `.env`, or command-line flags."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field
from pydantic_settings import NoDecode, SettingsConfigDict

from kit.settings import ServiceSettings


def parse_aliases(value: object) -> object:
    """``alias:voice,alias:voice`` (a plain `.env` value: no quotes, no JSON) into a mapping."""
    if not isinstance(value, str):
        return value
    table: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        alias, colon, voice = (text.strip() for text in item.partition(":"))
        if not (colon and alias and voice):
            raise ValueError(f"voice alias {item!r} is not alias:voice")
        table[alias] = voice
    return table


VoiceAliases = Annotated[dict[str, str], NoDecode, BeforeValidator(parse_aliases)]

# OpenAI's voice names, so clients that send them (LiveKit's default is marin) get speech:
# expresso voices of kyutai/tts-voices for moshi, English voices and variants for espeak.
MOSHI_VOICE_ALIASES = {
    "alloy": "expresso/ex04-ex01_narration_001_channel1_605s.wav",
    "ash": "expresso/ex03-ex01_desire_004_channel2_580s.wav",
    "ballad": "expresso/ex03-ex01_sleepy_001_channel1_619s.wav",
    "coral": "expresso/ex04-ex02_calm_001_channel2_336s.wav",
    "echo": "expresso/ex03-ex01_calm_001_channel1_1143s.wav",
    "fable": "vctk/p226_023.wav",
    "nova": "expresso/ex04-ex02_happy_001_channel1_118s.wav",
    "onyx": "expresso/ex04-ex01_sympathetic-sad_008_channel2_453s.wav",
    "sage": "vctk/p228_023.wav",
    "shimmer": "expresso/ex04-ex02_desire_001_channel2_694s.wav",
    "verse": "expresso/ex03-ex01_laughing_001_channel1_188s.wav",
    "marin": "expresso/ex01-ex02_default_001_channel2_198s.wav",
    "cedar": "expresso/ex03-ex01_happy_001_channel1_334s.wav",
}
ESPEAK_VOICE_ALIASES = {
    "alloy": "en-us+f2",
    "ash": "en-us+m3",
    "ballad": "en-gb-x-rp+m2",
    "coral": "en-us+f4",
    "echo": "en-us+m1",
    "fable": "en-gb-x-rp",
    "nova": "en-us+f3",
    "onyx": "en-us+m2",
    "sage": "en-gb+f2",
    "shimmer": "en-us+f5",
    "verse": "en-us-nyc+m5",
    "marin": "en-us+f1",
    "cedar": "en-us",
}

# The bundled Piper voice is the only one installed: every name speaks with it.
PIPER_VOICE_ALIASES = dict.fromkeys(MOSHI_VOICE_ALIASES, "en_US-joe-medium")


class TtsSettings(ServiceSettings):
    """Everything `python -m services.tts` can be told."""

    model_config = SettingsConfigDict(
        env_prefix="TTS_", env_file=".env", extra="ignore", populate_by_name=True, env_ignore_empty=True
    )

    port: int = Field(3003, ge=0, le=65535)
    engine: Literal["moshi", "piper", "espeak"] = Field(
        "moshi",
        description="moshi: Kyutai TTS (GPU); piper: Piper neural voices (CPU); espeak: espeak-ng (CPU, "
        "about 100 languages, robotic).",
    )
    model: str = Field("kyutai/tts-1.6b-en_fr", description="HF repo id or local checkpoint directory.")
    voice: str | None = Field(
        None,
        description="Default voice: a name in the voice repo (moshi; default "
        "expresso/ex03-ex01_happy_001_channel1_334s.wav), a Piper voice's name or .onnx file (piper; "
        "default en_US-joe-medium), or an espeak-ng voice (espeak; default en-us).",
    )
    voice_repo: str = Field(
        "kyutai/tts-voices", description="HF repo id or local directory holding the voice embeddings."
    )
    moshi_voice_aliases: VoiceAliases = Field(
        MOSHI_VOICE_ALIASES,
        description="alias:voice,... for moshi; an alias whose voice is missing uses the default voice.",
    )
    espeak_voice_aliases: VoiceAliases = Field(
        ESPEAK_VOICE_ALIASES,
        description="alias:voice,... for espeak; an alias whose voice is missing uses the default voice.",
    )
    piper_voice_aliases: VoiceAliases = Field(
        PIPER_VOICE_ALIASES,
        description="alias:voice,... for piper; an alias whose voice is missing uses the default voice.",
    )
    piper_voices: str | None = Field(
        None,
        description="piper: a voice file (.onnx, its .onnx.json beside it) or a directory of them, offered "
        "by file name less .onnx beside the bundled en_US-joe-medium.",
    )
    piper_threads: int = Field(
        1,
        ge=1,
        le=64,
        description="piper: onnxruntime threads per synthesis; 1 leaves the other core of a 2-core "
        "machine to the STT (2 speaks a long phrase about 1.5x faster on an idle machine).",
    )
    piper_length_scale: float | None = Field(
        None, gt=0.0, le=4.0, description="piper: phoneme length, >1 speaks slower; unset: the voice's own."
    )
    piper_noise_scale: float | None = Field(
        None, ge=0.0, le=2.0, description="piper: variation in the voice; unset: the voice's own (0.667)."
    )
    piper_noise_w_scale: float | None = Field(
        None, ge=0.0, le=2.0, description="piper: variation in phoneme lengths; unset: the voice's own (0.8)."
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
    catchup_ms: float = Field(
        40.0,
        ge=0,
        le=10_000,
        description="moshi: per step, time that may go to extra text-only steps for new streams still in "
        "the model's text-to-audio delay, so a reply's first audio comes sooner while other streams "
        "speak (each costs one batch-wide transformer step); 0 turns it off.",
    )
    max_text_chars: int = Field(4000, gt=0, description="Most text one stream or request may send.")
    idle_timeout_s: float = Field(30.0, gt=0, description="Close a stream that sends nothing for this long.")
    synthesize_wait_s: float = Field(
        30.0, ge=0, description="How long POST /synthesize waits for a free slot."
    )

    def voice_aliases(self, engine: str) -> dict[str, str]:
        """The alias table of this engine."""
        tables = {
            "moshi": self.moshi_voice_aliases,
            "piper": self.piper_voice_aliases,
            "espeak": self.espeak_voice_aliases,
        }
        return tables[engine]
