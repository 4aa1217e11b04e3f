"""Client events -> what the pipeline takes: session settings, reply requests, audio samples."""

from __future__ import annotations

import binascii

import numpy as np

from orchestrator.pipeline.config import ResponseRequest, SessionConfig, TurnDetectionConfig
from orchestrator.realtime.client_events import (
    EventError,
    ResponseParams,
    SessionPatch,
)
from orchestrator.realtime.session_model import Session


def apply_session_update(session: Session, patch: SessionPatch) -> None:
    """Change the fields a `session.update` set (already validated by its model)."""
    if patch.instructions is not None:
        session.instructions = patch.instructions
    if patch.max_output_tokens is not None:
        session.max_output_tokens = patch.max_output_tokens
    audio = patch.audio
    if audio is not None and audio.input is not None and "turn_detection" in audio.input.model_fields_set:
        session.audio.input.turn_detection = audio.input.turn_detection  # None: manual commits
    if audio is not None and audio.output is not None and audio.output.voice is not None:
        session.audio.output.voice = audio.output.voice


def pipeline_config(session: Session) -> SessionConfig:
    """The pipeline's view of the session object the client sees."""
    detection = session.audio.input.turn_detection
    return SessionConfig(
        instructions=session.instructions or None,
        max_output_tokens=None if session.max_output_tokens == "inf" else session.max_output_tokens,
        voice=session.audio.output.voice,
        turn_detection=None
        if detection is None
        else TurnDetectionConfig(
            kind=detection.type,
            threshold=detection.threshold,
            silence_duration_ms=detection.silence_duration_ms,
            eagerness=detection.eagerness,
            idle_timeout_ms=detection.idle_timeout_ms,
            create_response=detection.create_response,
            interrupt_response=detection.interrupt_response,
            preemptive=detection.preemptive,
            interrupt_speech_ms=detection.interrupt_speech_ms,
        ),
    )


def response_request(params: ResponseParams | None) -> ResponseRequest:
    """What one `response.create` asked for (its instructions, token cap, voice, metadata)."""
    if params is None:
        return ResponseRequest()
    voice = (
        params.audio.output.voice if params.audio is not None and params.audio.output is not None else None
    )
    tokens = params.max_output_tokens
    return ResponseRequest(
        instructions=params.instructions,
        max_output_tokens=tokens if isinstance(tokens, int) else None,
        unlimited_tokens=tokens == "inf",
        voice=voice,
        metadata=params.metadata,
    )


def pcm16_audio(encoded: str, max_chars: int, event_id: str | None) -> np.ndarray:
    """An append's base64 PCM16 (OpenAI's `audio/pcm`) -> float32 samples in [-1, 1]."""
    if len(encoded) > max_chars:
        size = f"append of {len(encoded)} base64 characters; the limit is {max_chars}"
        raise EventError("audio_too_large", size, event_id, "audio")
    try:
        data = binascii.a2b_base64(encoded, strict_mode=True)  # b64decode(validate=True) runs a regex
    except (binascii.Error, ValueError):
        raise EventError("invalid_audio", "audio is not valid base64", event_id, "audio") from None
    if len(data) % 2:
        what = f"PCM16 needs an even number of bytes, got {len(data)}"
        raise EventError("invalid_audio", what, event_id, "audio")
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
