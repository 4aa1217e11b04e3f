"""TTS engines behind one batched interface (`base.TtsEngine`).

Heavy imports (torch, moshi, piper) live in the engine modules and are only imported by
`load_engine`, so the lite image never imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.tts.engines.base import TtsEngine
    from services.tts.settings import TtsSettings


def load_engine(settings: TtsSettings) -> TtsEngine:
    """Build the engine the settings name; blocking (loads weights), so call it off the event loop."""
    if settings.engine == "moshi":
        from services.tts.engines.moshi_engine import MoshiTtsEngine

        return MoshiTtsEngine(settings)
    if settings.engine == "piper":
        from services.tts.engines.piper_engine import PiperTtsEngine

        return PiperTtsEngine(settings)
    from services.tts.engines.espeak_engine import EspeakTtsEngine

    return EspeakTtsEngine(settings.batch_size, settings.voice)
