"""The Realtime session object (the subset we honour): what `session.created` / `.updated`
show and `session.update` changes, turn detection included."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from orchestrator.pipeline.events import new_id


class TurnDetection(BaseModel):
    """Server-side turn detection; `None` in `session.update` means manual commits.

    `preemptive` and `interrupt_speech_ms` are this project's additions, and `silence_duration_ms`
    defaults to 800 rather than 500 (see docs/orchestrator.md, Turns).
    """

    model_config = ConfigDict(extra="allow")
    type: Literal["server_vad", "semantic_vad"] = "server_vad"
    threshold: float = Field(
        0.6, ge=0.0, le=1.0, description="prs[2] (2 s pause probability) that ends a turn"
    )
    # 800, not OpenAI's 500: on the turn-taking bench, 500 ms replied over a mid-sentence
    # pause in 6 of 14 turns, 800 ms in none (docs/performance.md, Turn-taking).
    silence_duration_ms: int = Field(
        800, ge=80, le=10_000, description="silence needed before a turn may end"
    )
    prefix_padding_ms: int = Field(300, ge=0, le=5_000)
    eagerness: Literal["low", "medium", "high", "auto"] = "auto"
    idle_timeout_ms: int | None = Field(None, ge=1_000, le=300_000)
    create_response: bool = True
    interrupt_response: bool = True
    preemptive: bool = Field(False, description="prepare the reply at a likely end, send it once sure")
    interrupt_speech_ms: int = Field(
        640, ge=0, le=5_000, description="voiced audio that interrupts the assistant (or one word)"
    )

    @model_serializer(mode="wrap")
    def _fields_of_its_type(self, to_dict: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Only the fields OpenAI defines for this `type` (and this project's two)."""
        out: dict[str, Any] = to_dict(self)
        for name in SEMANTIC_ONLY if self.type == "server_vad" else SERVER_ONLY:
            out.pop(name, None)
        return out


SERVER_ONLY = ("threshold", "silence_duration_ms", "prefix_padding_ms", "idle_timeout_ms")
SEMANTIC_ONLY = ("eagerness",)


class AudioFormat(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["audio/pcm"] = "audio/pcm"
    rate: Literal[24000] = 24000


class AudioInput(BaseModel):
    model_config = ConfigDict(extra="allow")
    format: AudioFormat = Field(default_factory=AudioFormat)
    turn_detection: TurnDetection | None = Field(default_factory=TurnDetection)


class AudioOutput(BaseModel):
    model_config = ConfigDict(extra="allow")
    format: AudioFormat = Field(default_factory=AudioFormat)
    voice: str | None = None


class Audio(BaseModel):
    model_config = ConfigDict(extra="allow")
    input: AudioInput = Field(default_factory=AudioInput)
    output: AudioOutput = Field(default_factory=AudioOutput)


ToolName = Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]  # OpenAI's function names


class FunctionTool(BaseModel):
    """A function the model may call (`tools` of the session or of one response)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    type: Literal["function"] = "function"
    name: ToolName
    description: str = Field("", max_length=4096)
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class ToolChoiceFunction(BaseModel):
    """`tool_choice` naming the one function the model must call."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["function"] = "function"
    name: ToolName


ToolChoice = Literal["auto", "none", "required"] | ToolChoiceFunction
Modality = Literal["audio", "text"]


class Session(BaseModel):
    """The session object of `session.created/updated`."""

    model_config = ConfigDict(extra="allow")
    type: Literal["realtime"] = "realtime"
    id: str = Field(default_factory=lambda: new_id("sess"))
    object: Literal["realtime.session"] = "realtime.session"
    model: str = "unmute-slurm"
    output_modalities: list[Modality] = Field(default_factory=lambda: ["audio"])
    instructions: str = ""
    audio: Audio = Field(default_factory=Audio)
    max_output_tokens: int | Literal["inf"] = 300
    tools: list[FunctionTool] = Field(default_factory=list)
    tool_choice: ToolChoice = "auto"
