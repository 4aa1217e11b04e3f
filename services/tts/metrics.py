"""Prometheus metrics of the TTS service (names follow moshi-server's py_* where one exists)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

OPEN_STREAMS = Gauge("py_open_channels", "Streams holding a model slot")
CONNECTS = Counter("py_connect", "Streams that got a slot")
CAPACITY_REJECTIONS = Counter("tts_capacity_rejections_total", "Streams refused with 'no free channels'")
PROTOCOL_ERRORS = Counter("tts_protocol_errors_total", "Inbound messages answered with an Error", ["reason"])
STEP_SECONDS = Histogram(
    "tts_step_duration_seconds",
    "Seconds per batched engine step",
    buckets=(0.002, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.25, 0.5, 1.0),
)
FIRST_AUDIO_SECONDS = Histogram(
    "tts_first_audio_seconds",
    "From a stream's first word to its first audio frame",
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0),
)
FRAMES = Counter("tts_frames_total", "Audio frames generated")
