"""Prometheus metrics of the STT service (names follow moshi-server's asr_* where one exists)."""

from __future__ import annotations

from prometheus_client import Histogram

from services.common.metrics import StreamMetrics, StreamNames

STREAMS = StreamMetrics(
    StreamNames(
        service="stt",
        open_streams="asr_open_channels",
        connects="asr_connect",
        step_seconds="asr_model_step_duration",
        step_help="Seconds per batched model step",
        frames_help="Audio frames processed",
    )
)
STEP_OCCUPANCY = Histogram(
    "stt_step_active_slots",
    "Slots with a frame in each step",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
