"""What a session is set to do: the pipeline's view of the client's session settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from orchestrator.pipeline.items import Item

# Which tool the LLM may call: "auto", "none", "required", or the name of one function.
ToolChoice = Literal["auto", "none", "required"] | str


@dataclass(frozen=True, slots=True)
class TurnDetectionConfig:
    """Server-side turn detection (absent: the client commits turns itself)."""

    kind: Literal["server_vad", "semantic_vad"] = "semantic_vad"
    threshold: float = 0.6  # server_vad: prs[2] (2 s pause probability) that ends a turn
    silence_duration_ms: int = 800  # server_vad: and at least this much silence
    eagerness: Literal["low", "medium", "high", "auto"] = "auto"  # semantic_vad
    idle_timeout_ms: int | None = None  # a reply is asked for after this much silence
    create_response: bool = True
    interrupt_response: bool = True
    preemptive: bool = False  # prepare the reply at a likely end; send it once the end is sure
    interrupt_speech_ms: int = 640  # voiced audio that interrupts the assistant (or one word)


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the LLM may call: the client runs it and returns its output."""

    name: str
    description: str = ""
    parameters: dict[str, Any] | None = None  # JSON Schema of its arguments


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """The settings a turn reads; replaced whole on every `session.update`."""

    instructions: str | None = None  # None: the default system prompt
    max_output_tokens: int | None = 300  # None: no cap
    voice: str | None = None  # None: the TTS service's default
    turn_detection: TurnDetectionConfig | None = TurnDetectionConfig()
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice = "auto"
    text_only: bool = False  # replies as text, no voice


@dataclass(frozen=True, slots=True)
class ResponseRequest:
    """What one `response.create` asked for; None fields fall back to the session's."""

    instructions: str | None = None
    max_output_tokens: int | None = None
    unlimited_tokens: bool = False
    voice: str | None = None
    metadata: dict[str, str] | None = None
    tools: tuple[Tool, ...] | None = None
    tool_choice: ToolChoice | None = None
    text_only: bool | None = None
    out_of_band: bool = False  # conversation "none": the reply stays out of the conversation
    context: tuple[Item, ...] | None = None  # `input`: the LLM sees these instead of the conversation
