"""The Prometheus metrics both model services keep the same way, under each service's own names.

The names stay what dashboards and tests read (moshi-server's `asr_*` / `py_*` where one exists),
so each service passes its own; what is counted, and when, is the same for both.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

STEP_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.25, 0.5, 1.0)


@dataclass(frozen=True)
class StreamNames:
    """The metric names of one service."""

    service: str  # "stt" or "tts": the prefix of the names moshi-server has no equivalent for
    open_streams: str
    connects: str
    step_seconds: str
    step_help: str
    frames_help: str


class StreamMetrics:
    """Open streams, admissions, refusals, rejected messages, step time and frames of one service."""

    def __init__(self, names: StreamNames) -> None:
        service = names.service
        self.open_streams = Gauge(names.open_streams, "Streams holding a model slot")
        self.connects = Counter(names.connects, "Streams that got a slot")
        self.capacity_rejections = Counter(
            f"{service}_capacity_rejections_total", "Streams refused with 'no free channels'"
        )
        self.protocol_errors = Counter(
            f"{service}_protocol_errors_total", "Inbound messages answered with an Error", ["reason"]
        )
        self.step_seconds = Histogram(names.step_seconds, names.step_help, buckets=STEP_BUCKETS)
        self.frames = Counter(f"{service}_frames_total", names.frames_help)
