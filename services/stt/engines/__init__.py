"""STT engines behind one batched interface (`base.SttEngine`).

Heavy imports (torch, moshi, CTranslate2) live in the engine modules and are only
imported by `load_engine`, so the lite image never imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.stt.engines.base import SttEngine
    from services.stt.settings import SttSettings


def load_engine(settings: SttSettings) -> SttEngine:
    """Build the engine the settings name; blocking (loads weights), so call it off the event loop."""
    if settings.engine == "moshi":
        from services.stt.engines.moshi_engine import MoshiSttEngine

        return MoshiSttEngine(settings)
    from services.stt.engines.whisper_engine import WhisperOptions, WhisperSttEngine

    options = WhisperOptions(
        model=settings.whisper_model,
        device=settings.device,
        compute_type=settings.whisper_compute_type,
        threads=settings.whisper_threads,
        beam_size=settings.whisper_beam_size,
        min_window_s=settings.whisper_min_window_s,
        interim=settings.whisper_interim,
        interim_interval_s=settings.whisper_interim_interval_s,
        end_silence_s=settings.whisper_end_silence_s,
    )
    return WhisperSttEngine(settings.batch_size, options)
