"""Client audio -> float32 samples: an append's (or an item's) base64 PCM16, or the
original design's binary frames of float32 samples."""

from __future__ import annotations

import binascii

import numpy as np

from orchestrator.realtime.client_events import EventError


def pcm16_audio(encoded: str, max_chars: int, event_id: str | None, param: str = "audio") -> np.ndarray:
    """Base64 PCM16 (OpenAI's `audio/pcm`) -> float32 samples in [-1, 1]; `param` names the
    field in an error."""
    if len(encoded) > max_chars:
        size = f"{param} of {len(encoded)} base64 characters; the limit is {max_chars}"
        raise EventError("audio_too_large", size, event_id, param)
    try:
        data = binascii.a2b_base64(encoded, strict_mode=True)  # b64decode(validate=True) runs a regex
    except (binascii.Error, ValueError):
        raise EventError("invalid_audio", f"{param} is not valid base64", event_id, param) from None
    if len(data) % 2:
        what = f"PCM16 needs an even number of bytes, got {len(data)}"
        raise EventError("invalid_audio", what, event_id, param)
    return np.frombuffer(data, dtype="<i2") * np.float32(1 / 32768)


def float32_audio(data: bytes, max_bytes: int) -> np.ndarray:
    """The original design's binary frames: raw float32 24 kHz samples, checked and clipped."""
    if len(data) > max_bytes:
        raise EventError("audio_too_large", f"binary frame of {len(data)} bytes; the limit is {max_bytes}")
    if len(data) % 4:
        what = f"binary frames are float32 samples; {len(data)} bytes is not a multiple of 4"
        raise EventError("invalid_audio", what)
    pcm = np.frombuffer(data, dtype="<f4")
    if not np.isfinite(pcm).all():
        raise EventError("invalid_audio", "binary frame contains NaN or infinite samples")
    return np.clip(pcm, -1.0, 1.0)
