"""What our server events are made of: the objects inside them (items, content parts,
responses, errors), the `ServerEvent` base, and the events of a reply's audio part,
which share the `AudioIds` ids. server_events.py holds the other events.

They mirror the field names and types of the `openai` package's GA Realtime models
(`RealtimeConversationItemUserMessage`, `RealtimeResponse`, ...) for the subset we
use, without depending on that package; tests/unit/test_server_events.py checks the
parity. Unknown fields are refused, so a typo cannot reach a client.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.pipeline.events import new_id

ItemStatus = Literal["completed", "incomplete", "in_progress"]
ResponseStatus = Literal["completed", "cancelled", "failed", "incomplete", "in_progress"]
ErrorKind = Literal["invalid_request_error", "server_error"]


class ServerShape(BaseModel):
    """Base of everything we send: unknown fields are refused rather than sent."""

    model_config = ConfigDict(frozen=False, extra="forbid")


class ErrorDetail(ServerShape):
    """The `error` of an `error` event; `event_id` names the client event that caused it."""

    type: ErrorKind
    code: str | None
    message: str
    param: str | None = None
    event_id: str | None = None


class InputAudioContent(ServerShape):
    """A user message's audio; its transcript arrives in its own transcription events."""

    type: Literal["input_audio"] = "input_audio"
    transcript: str | None = None


class OutputAudioContent(ServerShape):
    """An assistant message's audio, with the text that was spoken."""

    type: Literal["output_audio"] = "output_audio"
    transcript: str | None = None


class UserMessageItem(ServerShape):
    """A user turn in the conversation."""

    id: str
    object: Literal["realtime.item"] = "realtime.item"
    type: Literal["message"] = "message"
    role: Literal["user"] = "user"
    status: ItemStatus
    content: list[InputAudioContent]

    @classmethod
    def of(cls, item_id: str, status: ItemStatus = "completed") -> UserMessageItem:
        """A user turn of one audio part (its transcript is sent by the transcription events)."""
        return cls(id=item_id, status=status, content=[InputAudioContent()])


class AssistantMessageItem(ServerShape):
    """A reply in the conversation; a cancelled or failed reply's item is `incomplete`."""

    id: str
    object: Literal["realtime.item"] = "realtime.item"
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    status: ItemStatus
    content: list[OutputAudioContent]

    @classmethod
    def of(
        cls, item_id: str, transcript: str | None = None, status: ItemStatus = "in_progress"
    ) -> AssistantMessageItem:
        """The reply's item: no content while it is generated, then one audio part with `transcript`."""
        content = [] if transcript is None else [OutputAudioContent(transcript=transcript)]
        return cls(id=item_id, status=status, content=content)


# The SDK tells the two apart by `role` as well (all messages have type "message").
ConversationItem = Annotated[UserMessageItem | AssistantMessageItem, Field(discriminator="role")]


class ContentPart(ServerShape):
    """The `part` of `response.content_part.*` (the SDK's `Part`: its types are "text" and "audio")."""

    type: Literal["audio"] = "audio"
    transcript: str = ""


class StatusError(ServerShape):
    """Why a response failed."""

    type: str
    code: str
    message: str


class ResponseStatusDetails(ServerShape):
    """Why a response ended as it did; `reason` for a cancelled one, `error` for a failed one."""

    type: Literal["completed", "cancelled", "incomplete", "failed"]
    reason: Literal["turn_detected", "client_cancelled", "max_output_tokens", "content_filter"] | None = None
    error: StatusError | None = None


class ResponseObject(ServerShape):
    """The response of `response.created` / `response.done`.

    `conversation_id` is optional in the SDK; OpenAI sets it (`conv_...`) for responses
    added to the default conversation and null for out-of-band ones.
    """

    id: str
    object: Literal["realtime.response"] = "realtime.response"
    status: ResponseStatus
    status_details: ResponseStatusDetails | None = None
    output: list[AssistantMessageItem] = Field(default_factory=list)
    output_modalities: list[Literal["audio", "text"]] = Field(default_factory=lambda: ["audio"])
    metadata: dict[str, str] | None = None
    conversation_id: str | None = None


class DurationUsage(ServerShape):
    """Transcription usage billed by audio duration (the SDK's `UsageTranscriptTextUsageDuration`)."""

    type: Literal["duration"] = "duration"
    seconds: float


class ServerEvent(ServerShape):
    """A server event with its own id; `wire()` is the text frame sent to the client."""

    event_id: str = Field(default_factory=lambda: new_id("event"))
    type: str

    def wire(self) -> str:
        """Compact JSON, None fields included (sent once per audio frame: nothing beyond the serializer)."""
        return self.model_dump_json()


class AudioIds(BaseModel):
    """Where a piece of a response belongs: its response, item and (always first) output and part."""

    response_id: str
    item_id: str
    output_index: int = 0
    content_index: int = 0


# ---- the events of a reply's audio part ---------------------------------------------------


class ContentPartAdded(AudioIds, ServerEvent):
    """Sent when the reply's audio part starts, before its first audio."""

    type: Literal["response.content_part.added"] = "response.content_part.added"
    part: ContentPart


class ContentPartDone(AudioIds, ServerEvent):
    """Sent when the reply's audio part ends, with its whole transcript."""

    type: Literal["response.content_part.done"] = "response.content_part.done"
    part: ContentPart


class OutputAudioDelta(AudioIds, ServerEvent):
    """Sent for each frame of reply audio: base64 PCM16, 24 kHz mono."""

    type: Literal["response.output_audio.delta"] = "response.output_audio.delta"
    delta: str


class OutputAudioDone(AudioIds, ServerEvent):
    """Sent when the reply's audio ends, also when it was cut short."""

    type: Literal["response.output_audio.done"] = "response.output_audio.done"


class OutputTranscriptDelta(AudioIds, ServerEvent):
    """Sent for each word of the reply as it goes to the TTS."""

    type: Literal["response.output_audio_transcript.delta"] = "response.output_audio_transcript.delta"
    delta: str


class OutputTranscriptDone(AudioIds, ServerEvent):
    """Sent when the reply's transcript is final."""

    type: Literal["response.output_audio_transcript.done"] = "response.output_audio_transcript.done"
    transcript: str
