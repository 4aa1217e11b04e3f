"""STT engines behind one batched interface (`base.SttEngine`).

Heavy imports (torch, moshi, pocketsphinx) live in the engine modules and are only
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

        return MoshiSttEngine(settings.model, settings.batch_size, settings.device, settings.dtype)
    from services.stt.engines.sphinx_engine import SphinxSttEngine

    return SphinxSttEngine(settings.batch_size)
