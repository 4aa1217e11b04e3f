"""The pipeline's events -> OpenAI Realtime server events, in the order GA clients expect.

One domain event may become several server events. The user's side is translated here
(a spoken turn's commit and transcript, the items a client creates and deletes, problems);
a reply's events in outbound_reply.py, which keeps the little per-reply state they need.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orchestrator.pipeline.events import (
    FunctionCallArguments,
    FunctionCallDone,
    FunctionCallStarted,
    IdleTimeout,
    InputCleared,
    ItemCreated,
    ItemDeleted,
    ItemTruncated,
    PlaybackCleared,
    PlaybackFinished,
    PreparedReplyDropped,
    Problem,
    ReplyMessageStarted,
    ResponseAudio,
    ResponseEnded,
    ResponseStarted,
    ResponseText,
    SessionEvent,
    SpeechStarted,
    SpeechStopped,
    TranscriptDelta,
    UserTurnCommitted,
    UserTurnTranscribed,
    new_id,
)
from orchestrator.pipeline.items import Item
from orchestrator.realtime import server_events as wire
from orchestrator.realtime.extension_events import UnmutePreparedReplyDropped
from orchestrator.realtime.outbound_reply import ReplyEvents
from orchestrator.realtime.server_items import DurationUsage, ServerEvent
from orchestrator.realtime.wire_items import InputAudioContent, UserMessageItem, wire_item

EXTENSION_PREFIX = "unmute_slurm."


class ServerEvents:
    """Translates one session's domain events.

    `extensions`: send this project's ``unmute_slurm.*`` events too. Off unless the client
    asked (strict clients, such as the `openai-agents` SDK, refuse types they do not know).
    """

    def __init__(self, *, extensions: bool) -> None:
        self.extensions = extensions
        self.replies = ReplyEvents(conversation_id=new_id("conv"))

    def translate(self, event: SessionEvent) -> list[ServerEvent]:
        """The server events for `event`, in the order they are sent."""
        out = _TRANSLATIONS[type(event)](self, event)
        if self.extensions:
            return out
        return [e for e in out if not e.type.startswith(EXTENSION_PREFIX)]

    @staticmethod
    def retrieve(item_id: str, item: Item | None, client_event_id: str | None) -> ServerEvent:
        """`conversation.item.retrieve`: the item as it is now, or an `item_not_found` error."""
        if item is None:
            what = f"no item {item_id!r} in the conversation"
            return wire.ErrorEvent.of("item_not_found", what, client_event_id, "item_id")
        return wire.ConversationItemRetrieved(item=wire_item(item))

    def _problem(self, event: Problem) -> list[ServerEvent]:
        return [wire.ErrorEvent.of(event.code, event.message, event.client_event_id, event.param, event.kind)]

    def _speech_started(self, event: SpeechStarted) -> list[ServerEvent]:
        return [
            wire.InputAudioBufferSpeechStarted(item_id=event.item_id, audio_start_ms=event.audio_start_ms)
        ]

    def _speech_stopped(self, event: SpeechStopped) -> list[ServerEvent]:
        return [wire.InputAudioBufferSpeechStopped(item_id=event.item_id, audio_end_ms=event.audio_end_ms)]

    def _transcript(self, event: TranscriptDelta) -> list[ServerEvent]:
        return [wire.InputTranscriptionDelta(item_id=event.item_id, delta=event.text)]

    def _cleared(self, event: InputCleared) -> list[ServerEvent]:
        return [wire.InputAudioBufferCleared()]

    def _idle(self, event: IdleTimeout) -> list[ServerEvent]:
        ms = {"audio_start_ms": event.audio_start_ms, "audio_end_ms": event.audio_end_ms}
        return [wire.InputAudioBufferTimeoutTriggered(item_id=event.item_id, **ms)]

    def _dropped(self, event: PreparedReplyDropped) -> list[ServerEvent]:
        return [UnmutePreparedReplyDropped(transcript=event.transcript)]

    def _truncated(self, event: ItemTruncated) -> list[ServerEvent]:
        return [
            wire.ConversationItemTruncated(
                item_id=event.item_id, audio_end_ms=event.audio_end_ms, transcript=event.heard
            )
        ]

    def _committed(self, event: UserTurnCommitted) -> list[ServerEvent]:
        item = UserMessageItem.of(event.item_id)
        return [
            wire.InputAudioBufferCommitted(item_id=event.item_id, previous_item_id=event.previous_item_id),
            wire.ConversationItemAdded(previous_item_id=event.previous_item_id, item=item),
        ]

    def _transcribed(self, event: UserTurnTranscribed) -> list[ServerEvent]:
        content = [InputAudioContent(transcript=event.transcript)]
        item = UserMessageItem(id=event.item_id, status="completed", content=content)
        usage = DurationUsage(seconds=round(event.audio_s, 3))
        return [
            wire.ConversationItemDone(previous_item_id=event.previous_item_id, item=item),
            wire.InputTranscriptionCompleted(item_id=event.item_id, transcript=event.transcript, usage=usage),
        ]

    def _created(self, event: ItemCreated) -> list[ServerEvent]:
        """A client's item: added, and done at once unless its audio is being transcribed."""
        item = wire_item(event.item)
        out: list[ServerEvent] = [
            wire.ConversationItemAdded(previous_item_id=event.previous_item_id, item=item)
        ]
        if item.status != "in_progress":
            out.append(wire.ConversationItemDone(previous_item_id=event.previous_item_id, item=item))
        return out

    def _deleted(self, event: ItemDeleted) -> list[ServerEvent]:
        return [wire.ConversationItemDeleted(item_id=event.item_id)]


def _reply(
    method: Callable[[ReplyEvents, Any], list[ServerEvent]],
) -> Callable[[ServerEvents, Any], list[ServerEvent]]:
    return lambda events, event: method(events.replies, event)


_TRANSLATIONS: dict[type, Callable[[ServerEvents, Any], list[ServerEvent]]] = {
    Problem: ServerEvents._problem,
    SpeechStarted: ServerEvents._speech_started,
    SpeechStopped: ServerEvents._speech_stopped,
    TranscriptDelta: ServerEvents._transcript,
    UserTurnCommitted: ServerEvents._committed,
    UserTurnTranscribed: ServerEvents._transcribed,
    InputCleared: ServerEvents._cleared,
    IdleTimeout: ServerEvents._idle,
    PreparedReplyDropped: ServerEvents._dropped,
    ItemCreated: ServerEvents._created,
    ItemDeleted: ServerEvents._deleted,
    ItemTruncated: ServerEvents._truncated,
    ResponseStarted: _reply(ReplyEvents.started),
    ReplyMessageStarted: _reply(ReplyEvents.message_started),
    ResponseText: _reply(ReplyEvents.text),
    ResponseAudio: _reply(ReplyEvents.audio),
    FunctionCallStarted: _reply(ReplyEvents.call_started),
    FunctionCallArguments: _reply(ReplyEvents.call_arguments),
    FunctionCallDone: _reply(ReplyEvents.call_done),
    ResponseEnded: _reply(ReplyEvents.ended),
    PlaybackCleared: _reply(ReplyEvents.playback_cleared),
    PlaybackFinished: _reply(ReplyEvents.playback_finished),
}
