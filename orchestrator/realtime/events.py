"""OpenAI Realtime API events (GA names) that this server speaks, as pydantic models.

Reference: https://platform.openai.com/docs/api-reference/realtime-client-events and
.../realtime-server-events. Only audio in / audio out is implemented; fields we do not
use are accepted and ignored (with the names logged) so clients written for OpenAI work.
Events prefixed ``unmute_slurm.`` are this project's extensions.
"""

from __future__ import annotations

import secrets
import typing
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError


def new_id(prefix: str) -> str:
    """Server-made ids, readable like OpenAI's (``item_...``, ``resp_...``)."""
    return f"{prefix}_{secrets.token_hex(8)}"


class _Event(BaseModel):
    model_config = ConfigDict(extra="allow")
    event_id: str | None = None


# ---- session configuration (the subset we honour) -------------------------------------


class TurnDetection(BaseModel):
    """Server-side turn detection; `None` in `session.update` means manual commits."""

    model_config = ConfigDict(extra="allow")
    type: Literal["server_vad", "semantic_vad"] = "server_vad"
    threshold: float = Field(
        0.6, ge=0.0, le=1.0, description="prs[2] (2 s pause probability) that ends a turn"
    )
    silence_duration_ms: int = Field(
        500, ge=80, le=10_000, description="silence needed before a turn may end"
    )
    prefix_padding_ms: int = Field(300, ge=0, le=5_000)
    create_response: bool = True
    interrupt_response: bool = True


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


class Session(BaseModel):
    """The session object of `session.created/updated`."""

    model_config = ConfigDict(extra="allow")
    type: Literal["realtime"] = "realtime"
    id: str = Field(default_factory=lambda: new_id("sess"))
    object: Literal["realtime.session"] = "realtime.session"
    model: str = "unmute-slurm"
    output_modalities: list[str] = Field(default_factory=lambda: ["audio"])
    instructions: str = ""
    audio: Audio = Field(default_factory=Audio)
    max_output_tokens: int | Literal["inf"] = 300


class SessionPatch(BaseModel):
    """What a `session.update` may change; absent fields stay as they are."""

    model_config = ConfigDict(extra="allow")
    type: Literal["realtime"] | None = None
    instructions: str | None = Field(None, max_length=20_000)
    audio: dict[str, Any] | None = None
    max_output_tokens: int | Literal["inf"] | None = None


# ---- client events ---------------------------------------------------------------------


class SessionUpdate(_Event):
    type: Literal["session.update"]
    session: SessionPatch


class InputAudioBufferAppend(_Event):
    type: Literal["input_audio_buffer.append"]
    audio: str


class InputAudioBufferCommit(_Event):
    type: Literal["input_audio_buffer.commit"]


class InputAudioBufferClear(_Event):
    type: Literal["input_audio_buffer.clear"]


class ResponseCreate(_Event):
    type: Literal["response.create"]
    response: dict[str, Any] | None = None


class ResponseCancel(_Event):
    type: Literal["response.cancel"]
    response_id: str | None = None


class ConversationItemTruncate(_Event):
    type: Literal["conversation.item.truncate"]
    item_id: str
    content_index: int = 0
    audio_end_ms: int = Field(ge=0)


CLIENT_EVENTS: tuple[type[_Event], ...] = (
    SessionUpdate,
    InputAudioBufferAppend,
    InputAudioBufferCommit,
    InputAudioBufferClear,
    ResponseCreate,
    ResponseCancel,
    ConversationItemTruncate,
)
CLIENT_EVENT_TYPES = frozenset(typing.get_args(m.model_fields["type"].annotation)[0] for m in CLIENT_EVENTS)
_client_adapter: TypeAdapter[Any] = TypeAdapter(
    Annotated[Union[CLIENT_EVENTS], Field(discriminator="type")]  # noqa: UP007
)


class EventError(ValueError):
    """A client event that cannot be used; becomes an `error` event with a stable `code`."""

    def __init__(
        self, code: str, message: str, event_id: str | None = None, param: str | None = None
    ) -> None:
        super().__init__(message)
        self.code, self.event_id, self.param = code, event_id, param


def parse_client_event(raw: Any) -> Any:
    """Validate a decoded JSON value as one of the client events we implement."""
    if not isinstance(raw, dict):
        raise EventError("invalid_event", "an event must be a JSON object")
    event_id = raw.get("event_id") if isinstance(raw.get("event_id"), str) else None
    kind = raw.get("type")
    if kind not in CLIENT_EVENT_TYPES:
        raise EventError(
            "unknown_event", f"unknown or unsupported event type {kind!r}", event_id=event_id, param="type"
        )
    try:
        return _client_adapter.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        param = ".".join(str(p) for p in first["loc"][1:])
        raise EventError(
            "invalid_value", f"invalid {kind}: {param}: {first['msg']}", event_id, param
        ) from None


# ---- server events -----------------------------------------------------------------------


def server_event(kind: str, **fields: Any) -> dict[str, Any]:
    """A server event as a JSON-ready dict, with its own event id."""
    return {"type": kind, "event_id": new_id("event"), **fields}


def error_event(
    code: str,
    message: str,
    event_id: str | None = None,
    param: str | None = None,
    kind: str = "invalid_request_error",
) -> dict[str, Any]:
    """OpenAI's `error` event; `event_id` names the client event that caused it."""
    return server_event(
        "error", error={"type": kind, "code": code, "message": message, "param": param, "event_id": event_id}
    )
