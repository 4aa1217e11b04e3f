"""What our server events are made of: the objects inside them (content parts, responses,
errors; the items are in wire_items.py), the `ServerEvent` base, and the events of a
reply message's part (audio, or text for a text-only reply), which share the `PartIds`.
server_events.py holds the other events.

They mirror the field names and types of the `openai` package's GA Realtime models
(`RealtimeResponse`, ...) for the subset we use, without depending on that package;
tests/unit/orchestrator/test_server_events.py checks the parity. Unknown fields are refused, so a typo
cannot reach a client.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from orchestrator.pipeline.events import new_id
from orchestrator.realtime.wire_items import ConversationItem, ServerShape

ResponseStatus = Literal["completed", "cancelled", "failed", "incomplete", "in_progress"]
ErrorKind = Literal["invalid_request_error", "server_error"]


class ErrorDetail(ServerShape):
    """The `error` of an `error` event; `event_id` names the client event that caused it."""

    type: ErrorKind
    code: str | None
    message: str
    param: str | None = None
    event_id: str | None = None


class ContentPart(ServerShape):
    """The `part` of `response.content_part.*` (the SDK's `Part`: its types are "text" and "audio")."""

    type: Literal["audio"] = "audio"
    transcript: str = ""


class TextPart(ServerShape):
    """The `part` of a text-only reply's `response.content_part.*`."""

    type: Literal["text"] = "text"
    text: str = ""


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
    output: list[ConversationItem] = Field(default_factory=list)
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


class PartIds(BaseModel):
    """Where a piece of a reply's message belongs: its response, item, output and (one) part."""

    response_id: str
    item_id: str
    output_index: int = 0
    content_index: int = 0


# ---- the events of a reply message's part ---------------------------------------------------


class ContentPartAdded(PartIds, ServerEvent):
    """Sent when the reply's message part starts, before its first audio (or text)."""

    type: Literal["response.content_part.added"] = "response.content_part.added"
    part: ContentPart | TextPart


class ContentPartDone(PartIds, ServerEvent):
    """Sent when the reply's message part ends, with its whole transcript (or text)."""

    type: Literal["response.content_part.done"] = "response.content_part.done"
    part: ContentPart | TextPart


class OutputAudioDelta(PartIds, ServerEvent):
    """Sent for each frame of reply audio: base64 PCM16, 24 kHz mono."""

    type: Literal["response.output_audio.delta"] = "response.output_audio.delta"
    delta: str


class OutputAudioDone(PartIds, ServerEvent):
    """Sent when the reply's audio ends, also when it was cut short."""

    type: Literal["response.output_audio.done"] = "response.output_audio.done"


class OutputTranscriptDelta(PartIds, ServerEvent):
    """Sent for each word of the reply as it goes to the TTS."""

    type: Literal["response.output_audio_transcript.delta"] = "response.output_audio_transcript.delta"
    delta: str


class OutputTranscriptDone(PartIds, ServerEvent):
    """Sent when the reply's transcript is final."""

    type: Literal["response.output_audio_transcript.done"] = "response.output_audio_transcript.done"
    transcript: str


class OutputTextDelta(PartIds, ServerEvent):
    """Sent for each piece of a text-only reply, as the LLM writes it."""

    type: Literal["response.output_text.delta"] = "response.output_text.delta"
    delta: str


class OutputTextDone(PartIds, ServerEvent):
    """Sent when a text-only reply's text is final."""

    type: Literal["response.output_text.done"] = "response.output_text.done"
    text: str
