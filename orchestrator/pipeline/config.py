"""What a session is set to do: the pipeline's view of the client's session settings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TurnDetectionConfig:
    """Server-side turn detection (absent: the client commits turns itself)."""

    threshold: float = 0.6  # prs[2] (2 s pause probability) that ends a turn
    silence_duration_ms: int = 500
    create_response: bool = True
    interrupt_response: bool = True


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """The settings a turn reads; replaced whole on every `session.update`."""

    instructions: str | None = None  # None: the default system prompt
    max_output_tokens: int | None = 300  # None: no cap
    voice: str | None = None  # None: the TTS service's default
    turn_detection: TurnDetectionConfig | None = TurnDetectionConfig()


@dataclass(frozen=True, slots=True)
class ResponseRequest:
    """What one `response.create` asked for; None fields fall back to the session's."""

    instructions: str | None = None
    max_output_tokens: int | None = None
    unlimited_tokens: bool = False
    voice: str | None = None
    metadata: dict[str, str] | None = None
