"""Prometheus metrics of the TTS service (names follow moshi-server's py_* where one exists)."""

from __future__ import annotations

from prometheus_client import Histogram

from services.common.metrics import StreamMetrics, StreamNames

STREAMS = StreamMetrics(
    StreamNames(
        service="tts",
        open_streams="py_open_channels",
        connects="py_connect",
        step_seconds="tts_step_duration_seconds",
        step_help="Seconds per batched engine step",
        frames_help="Audio frames generated",
    )
)
FIRST_AUDIO_SECONDS = Histogram(
    "tts_first_audio_seconds",
    "From a stream's first word to its first audio frame",
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0),
)
