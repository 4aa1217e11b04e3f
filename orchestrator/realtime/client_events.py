"""OpenAI Realtime API client events (GA names) that this server takes, as pydantic models.

Reference: https://platform.openai.com/docs/api-reference/realtime-client-events and
.../realtime-server-events. Fields we do not use are accepted and ignored so clients
written for OpenAI work; what we cannot do (image input, MCP tools) is refused by name.
The items and tools inside events are in client_items.py.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from orchestrator.realtime.client_items import InputParam, ItemId, ItemParam, Tools
from orchestrator.realtime.session_model import AudioFormat, Modality, ToolChoice, TurnDetection

# Limits applied while a client event is parsed, before any field is read. Nesting deeper
# than the JSON parser's 200 levels and integers of over 4300 digits are refused by the
# parser itself; NaN and Infinity are not JSON and are refused too.
MAX_EVENT_OVERHEAD_CHARS = 64 * 1024  # what an event may hold beyond its audio
MAX_OUTPUT_TOKENS = 4096  # OpenAI's cap on `max_output_tokens`


class _Model(BaseModel):
    """Unknown fields are accepted (clients written for OpenAI send more than we use)."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


class _Event(_Model):
    event_id: str | None = Field(None, max_length=512)


OutputTokens = Annotated[int, Field(ge=1, le=MAX_OUTPUT_TOKENS)] | Literal["inf"]
Voice = Annotated[str, Field(min_length=1, max_length=200)]
MetadataKey = Annotated[str, Field(max_length=64)]
MetadataValue = Annotated[str, Field(max_length=512)]
Modalities = Annotated[list[Modality], Field(min_length=1, max_length=2)]


class AudioInputPatch(_Model):
    format: AudioFormat | None = None
    turn_detection: TurnDetection | None = None  # explicitly null: manual commits


class AudioOutputPatch(_Model):
    format: AudioFormat | None = None
    voice: Voice | None = None


class AudioPatch(_Model):
    input: AudioInputPatch | None = None
    output: AudioOutputPatch | None = None


class SessionPatch(_Model):
    """What a `session.update` may change; absent fields stay as they are."""

    type: Literal["realtime"] | None = None
    instructions: str | None = Field(None, max_length=20_000)
    audio: AudioPatch | None = None
    max_output_tokens: OutputTokens | None = None
    output_modalities: Modalities | None = None
    tools: Tools | None = None
    tool_choice: ToolChoice | None = None


class ResponseAudio(_Model):
    """`response.create`'s audio: only the output side (format, voice) applies to one response."""

    output: AudioOutputPatch | None = None


class ResponseParams(_Model):
    """`response.create`'s `response`: what one reply does differently from the session.

    `conversation: "none"` keeps the reply out of the conversation (out of band); `input`
    gives the model these items instead of the conversation (`[]`: none at all).
    """

    instructions: str | None = Field(None, max_length=20_000)
    max_output_tokens: OutputTokens | None = None
    metadata: dict[MetadataKey, MetadataValue] | None = Field(None, max_length=16)  # OpenAI's limits
    audio: ResponseAudio | None = None
    conversation: Literal["auto", "none"] | None = None
    output_modalities: Modalities | None = None
    tools: Tools | None = None
    tool_choice: ToolChoice | None = None
    input: list[InputParam] | None = Field(None, max_length=256)


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
    response: ResponseParams | None = None


class ResponseCancel(_Event):
    type: Literal["response.cancel"]
    response_id: str | None = Field(None, max_length=512)


class ConversationItemTruncate(_Event):
    type: Literal["conversation.item.truncate"]
    item_id: str = Field(max_length=512)
    content_index: int = Field(0, ge=0, le=0)  # one content part per item
    audio_end_ms: int = Field(ge=0, le=24 * 3600 * 1000)


class ConversationItemRetrieve(_Event):
    type: Literal["conversation.item.retrieve"]
    item_id: str = Field(max_length=512)


class ConversationItemCreate(_Event):
    """Add an item after `previous_item_id` (absent: at the end; "root": first)."""

    type: Literal["conversation.item.create"]
    previous_item_id: ItemId | None = None
    item: ItemParam


class ConversationItemDelete(_Event):
    type: Literal["conversation.item.delete"]
    item_id: str = Field(max_length=512)


CLIENT_EVENTS: tuple[type[_Event], ...] = (
    SessionUpdate,
    InputAudioBufferAppend,
    InputAudioBufferCommit,
    InputAudioBufferClear,
    ResponseCreate,
    ResponseCancel,
    ConversationItemTruncate,
    ConversationItemRetrieve,
    ConversationItemCreate,
    ConversationItemDelete,
)
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


def parse_client_event(text: str, max_audio_chars: int) -> Any:
    """Parse and validate one JSON text frame as one of the client events we implement.

    Nothing of the event is used before the whole of it has passed the event model; an
    event that fails is reported with its `event_id` when that much of it is a string.
    """
    limit = max_audio_chars + MAX_EVENT_OVERHEAD_CHARS
    if len(text) > limit:
        raise EventError("event_too_large", f"event of {len(text)} characters; the limit is {limit}")
    try:
        raw = pydantic_core.from_json(text, allow_inf_nan=False)
    except ValueError as exc:
        raise EventError("invalid_json", f"not valid JSON: {exc}") from None
    try:
        return _client_adapter.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
    event_id = raw.get("event_id") if isinstance(raw, dict) else None
    event_id = event_id if isinstance(event_id, str) and len(event_id) <= 512 else None
    if first["type"] == "model_attributes_type":
        raise EventError("invalid_event", "an event must be a JSON object") from None
    if first["type"] in ("union_tag_invalid", "union_tag_not_found") and len(first["loc"]) < 2:
        tag = (first.get("ctx") or {}).get("tag")
        what = f"unknown or unsupported event type {tag}" if tag is not None else "an event needs a type"
        raise EventError("unknown_event", what, event_id, "type") from None
    kind, *path = first["loc"]
    param = ".".join(str(p) for p in path)
    raise EventError("invalid_value", f"invalid {kind}: {param}: {first['msg']}", event_id, param) from None
