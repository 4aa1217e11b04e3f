"""The OpenAI Realtime (GA) server events we send, one pydantic model each (`SERVER_EVENTS`).

They mirror the `openai` package's `RealtimeServerEvent` union for the subset we use (see
server_items.py); types starting with ``unmute_slurm.`` are this project's extensions.
"""

from __future__ import annotations

from typing import Literal

from orchestrator.realtime.extension_events import (
    UnmuteLatency,
    UnmuteOutputAudioClear,
    UnmutePreparedReplyDropped,
)
from orchestrator.realtime.server_items import (
    ContentPartAdded,
    ContentPartDone,
    DurationUsage,
    ErrorDetail,
    ErrorKind,
    OutputAudioDelta,
    OutputAudioDone,
    OutputTextDelta,
    OutputTextDone,
    OutputTranscriptDelta,
    OutputTranscriptDone,
    ResponseObject,
    ServerEvent,
)
from orchestrator.realtime.session_model import Session
from orchestrator.realtime.wire_items import ConversationItem


class ErrorEvent(ServerEvent):
    """Sent when a client event cannot be used or a part of the server failed."""

    type: Literal["error"] = "error"
    error: ErrorDetail

    @classmethod
    def of(
        cls,
        code: str,
        message: str,
        event_id: str | None = None,
        param: str | None = None,
        kind: ErrorKind = "invalid_request_error",
    ) -> ErrorEvent:
        """The `error` event for `code`; `event_id` names the client event that caused it."""
        return cls(error=ErrorDetail(type=kind, code=code, message=message, param=param, event_id=event_id))


class SessionCreated(ServerEvent):
    """Sent first on every connection, with the session's starting configuration."""

    type: Literal["session.created"] = "session.created"
    session: Session


class SessionUpdated(ServerEvent):
    """Sent after a `session.update` was applied, with the whole configuration."""

    type: Literal["session.updated"] = "session.updated"
    session: Session


class InputAudioBufferSpeechStarted(ServerEvent):
    """Sent when turn detection hears the user start speaking."""

    type: Literal["input_audio_buffer.speech_started"] = "input_audio_buffer.speech_started"
    item_id: str
    audio_start_ms: int


class InputAudioBufferSpeechStopped(ServerEvent):
    """Sent when turn detection decides the user's turn has ended."""

    type: Literal["input_audio_buffer.speech_stopped"] = "input_audio_buffer.speech_stopped"
    item_id: str
    audio_end_ms: int


class InputAudioBufferCommitted(ServerEvent):
    """Sent when the user's audio becomes a user item (turn end or `input_audio_buffer.commit`)."""

    type: Literal["input_audio_buffer.committed"] = "input_audio_buffer.committed"
    item_id: str
    previous_item_id: str | None


class InputAudioBufferCleared(ServerEvent):
    """Sent after `input_audio_buffer.clear` dropped the uncommitted audio."""

    type: Literal["input_audio_buffer.cleared"] = "input_audio_buffer.cleared"


class InputAudioBufferTimeoutTriggered(ServerEvent):
    """Sent when the user stayed silent past the idle timeout and a turn was committed for them."""

    type: Literal["input_audio_buffer.timeout_triggered"] = "input_audio_buffer.timeout_triggered"
    item_id: str
    audio_start_ms: int
    audio_end_ms: int


class ConversationItemAdded(ServerEvent):
    """Sent when an item enters the conversation, after `previous_item_id` (a spoken turn's
    at its commit, a reply's message or call as it starts, a client's at its create)."""

    type: Literal["conversation.item.added"] = "conversation.item.added"
    previous_item_id: str | None
    item: ConversationItem


class ConversationItemDone(ServerEvent):
    """Sent when an item is final (a user turn transcribed, a reply's message or call ended,
    a client's item created)."""

    type: Literal["conversation.item.done"] = "conversation.item.done"
    previous_item_id: str | None
    item: ConversationItem


class InputTranscriptionDelta(ServerEvent):
    """Sent for each word the STT hears in the user's turn."""

    type: Literal["conversation.item.input_audio_transcription.delta"] = (
        "conversation.item.input_audio_transcription.delta"
    )
    item_id: str
    content_index: int = 0
    delta: str


class InputTranscriptionCompleted(ServerEvent):
    """Sent when the user's committed turn is fully transcribed."""

    type: Literal["conversation.item.input_audio_transcription.completed"] = (
        "conversation.item.input_audio_transcription.completed"
    )
    item_id: str
    content_index: int = 0
    transcript: str
    usage: DurationUsage


class ConversationItemTruncated(ServerEvent):
    """Sent after `conversation.item.truncate`; `transcript` (our addition) is the text that was heard."""

    type: Literal["conversation.item.truncated"] = "conversation.item.truncated"
    item_id: str
    content_index: int = 0
    audio_end_ms: int
    transcript: str


class ConversationItemRetrieved(ServerEvent):
    """The answer to `conversation.item.retrieve`: the item as it is now."""

    type: Literal["conversation.item.retrieved"] = "conversation.item.retrieved"
    item: ConversationItem


class ConversationItemDeleted(ServerEvent):
    """The answer to `conversation.item.delete`: the item is gone, from the LLM's context too."""

    type: Literal["conversation.item.deleted"] = "conversation.item.deleted"
    item_id: str


class ResponseCreated(ServerEvent):
    """Sent when a reply starts, before any of its output."""

    type: Literal["response.created"] = "response.created"
    response: ResponseObject


class ResponseDone(ServerEvent):
    """Sent last for every reply, whether it completed, was cancelled or failed."""

    type: Literal["response.done"] = "response.done"
    response: ResponseObject


class OutputItemAdded(ServerEvent):
    """Sent when a reply's message (at its first words) or function call starts, empty."""

    type: Literal["response.output_item.added"] = "response.output_item.added"
    response_id: str
    output_index: int = 0
    item: ConversationItem


class OutputItemDone(ServerEvent):
    """Sent when a reply's message or call is final, also when the reply was cut short."""

    type: Literal["response.output_item.done"] = "response.output_item.done"
    response_id: str
    output_index: int = 0
    item: ConversationItem


class FunctionCallArgumentsDelta(ServerEvent):
    """Sent for each piece of a call's JSON arguments, as the LLM writes them."""

    type: Literal["response.function_call_arguments.delta"] = "response.function_call_arguments.delta"
    response_id: str
    item_id: str
    output_index: int
    call_id: str
    delta: str


class FunctionCallArgumentsDone(ServerEvent):
    """Sent when a call's arguments are complete: the client may run the function now
    (not sent for a call cut short, whose arguments are not whole)."""

    type: Literal["response.function_call_arguments.done"] = "response.function_call_arguments.done"
    response_id: str
    item_id: str
    output_index: int
    call_id: str
    name: str
    arguments: str


class OutputAudioBufferStarted(ServerEvent):
    """Sent when a reply's audio starts streaming to the client."""

    type: Literal["output_audio_buffer.started"] = "output_audio_buffer.started"
    response_id: str


class OutputAudioBufferStopped(ServerEvent):
    """Sent once all of a reply's audio has played out on the client (as estimated in real
    time), after its `response.done`; never for audio that was cleared."""

    type: Literal["output_audio_buffer.stopped"] = "output_audio_buffer.stopped"
    response_id: str


class OutputAudioBufferCleared(ServerEvent):
    """Sent when a reply's audio still playing was dropped (barge-in or cancel)."""

    type: Literal["output_audio_buffer.cleared"] = "output_audio_buffer.cleared"
    response_id: str


SERVER_EVENTS: tuple[type[ServerEvent], ...] = (
    ErrorEvent,
    SessionCreated,
    SessionUpdated,
    InputAudioBufferSpeechStarted,
    InputAudioBufferSpeechStopped,
    InputAudioBufferCommitted,
    InputAudioBufferCleared,
    InputAudioBufferTimeoutTriggered,
    ConversationItemAdded,
    ConversationItemDone,
    InputTranscriptionDelta,
    InputTranscriptionCompleted,
    ConversationItemTruncated,
    ConversationItemRetrieved,
    ConversationItemDeleted,
    ResponseCreated,
    ResponseDone,
    OutputItemAdded,
    OutputItemDone,
    FunctionCallArgumentsDelta,
    FunctionCallArgumentsDone,
    ContentPartAdded,
    ContentPartDone,
    OutputAudioDelta,
    OutputAudioDone,
    OutputTranscriptDelta,
    OutputTranscriptDone,
    OutputTextDelta,
    OutputTextDone,
    OutputAudioBufferStarted,
    OutputAudioBufferStopped,
    OutputAudioBufferCleared,
    UnmuteOutputAudioClear,
    UnmuteLatency,
    UnmutePreparedReplyDropped,
)
