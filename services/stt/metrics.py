"""Prometheus metrics of the STT service (names follow moshi-server's asr_* where one exists)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

OPEN_STREAMS = Gauge("asr_open_channels", "Streams holding a model slot")
CONNECTS = Counter("asr_connect", "Streams that got a slot")
CAPACITY_REJECTIONS = Counter("stt_capacity_rejections_total", "Connections refused with 'no free channels'")
PROTOCOL_ERRORS = Counter("stt_protocol_errors_total", "Inbound messages answered with an Error", ["reason"])
STEP_SECONDS = Histogram(
    "asr_model_step_duration",
    "Seconds per batched model step",
    buckets=(0.002, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.25, 0.5, 1.0),
)
STEP_OCCUPANCY = Histogram(
    "stt_step_active_slots",
    "Slots with a frame in each step",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
FRAMES = Counter("stt_frames_total", "Audio frames processed")
