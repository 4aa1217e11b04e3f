"""The pipeline's events -> OpenAI Realtime server events, in the order GA clients expect.

One domain event may become several server events: a reply's start is `response.created`,
its item's `output_item.added` and `conversation.item.added`, and its audio part's
`content_part.added`. The translator keeps the little per-connection state this needs.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import numpy as np

from orchestrator.pipeline.events import (
    IdleTimeout,
    InputCleared,
    ItemTruncated,
    PlaybackCleared,
    PreparedReplyDropped,
    Problem,
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
)
from orchestrator.realtime import server_events as wire
from orchestrator.realtime.server_items import (
    AssistantMessageItem,
    ContentPart,
    ConversationItem,
    DurationUsage,
    InputAudioContent,
    ResponseObject,
    ResponseStatusDetails,
    ServerEvent,
    StatusError,
    UserMessageItem,
)

EXTENSION_PREFIX = "unmute_slurm."
KEPT_ITEMS = 64


def pcm16_base64(pcm: np.ndarray) -> str:
    """float32 samples -> base64 little-endian PCM16 (OpenAI's `audio/pcm`)."""
    return base64.b64encode((np.clip(pcm, -1.0, 1.0) * 32767).astype("<i2").tobytes()).decode()


class ServerEvents:
    """Translates one session's domain events, and keeps what `conversation.item.retrieve` asks for.

    `extensions`: send this project's ``unmute_slurm.*`` events too. Off unless the client
    asked (strict clients, such as the `openai-agents` SDK, refuse types they do not know).
    """

    def __init__(self, *, extensions: bool) -> None:
        self.extensions = extensions
        self._previous_item: dict[str, str | None] = {}  # by response id, until it ends
        self._streaming: set[str] = set()  # responses whose audio started and was not cleared
        self._items: dict[str, ConversationItem] = {}  # the latest state of recent items

    def translate(self, event: SessionEvent) -> list[ServerEvent]:
        """The server events for `event`, in the order they are sent."""
        out = _TRANSLATIONS[type(event)](self, event)
        if self.extensions:
            return out
        return [e for e in out if not e.type.startswith(EXTENSION_PREFIX)]

    def retrieve(self, item_id: str, client_event_id: str | None) -> ServerEvent:
        """`conversation.item.retrieve`: the item as it is now, or an `item_not_found` error."""
        item = self._items.get(item_id)
        if item is None:
            what = f"no item {item_id!r} in the recent conversation"
            return wire.ErrorEvent.of("item_not_found", what, client_event_id, "item_id")
        return wire.ConversationItemRetrieved(item=item)

    def _keep(self, item: ConversationItem) -> None:
        self._items.pop(item.id, None)
        self._items[item.id] = item
        while len(self._items) > KEPT_ITEMS:
            self._items.pop(next(iter(self._items)))

    def _text(self, event: ResponseText) -> list[ServerEvent]:
        return [
            wire.OutputTranscriptDelta(
                response_id=event.response_id, item_id=event.item_id, delta=event.text + " "
            )
        ]

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
        return [wire.UnmutePreparedReplyDropped(transcript=event.transcript)]

    def _playback_cleared(self, event: PlaybackCleared) -> list[ServerEvent]:
        self._streaming.discard(event.response_id)
        return [
            wire.UnmuteOutputAudioClear(response_id=event.response_id, item_id=event.item_id),
            wire.OutputAudioBufferCleared(response_id=event.response_id),
        ]

    def _truncated(self, event: ItemTruncated) -> list[ServerEvent]:
        if isinstance(item := self._items.get(event.item_id), AssistantMessageItem):
            self._keep(AssistantMessageItem.of(item.id, event.heard, "incomplete"))
        return [
            wire.ConversationItemTruncated(
                item_id=event.item_id, audio_end_ms=event.audio_end_ms, transcript=event.heard
            )
        ]

    def _audio(self, event: ResponseAudio) -> list[ServerEvent]:
        delta = wire.OutputAudioDelta(
            response_id=event.response_id, item_id=event.item_id, delta=pcm16_base64(event.pcm)
        )
        if event.response_id in self._streaming or event.response_id not in self._previous_item:
            return [delta]
        self._streaming.add(event.response_id)
        return [wire.OutputAudioBufferStarted(response_id=event.response_id), delta]

    def _committed(self, event: UserTurnCommitted) -> list[ServerEvent]:
        item = UserMessageItem.of(event.item_id)
        self._keep(item)
        return [
            wire.InputAudioBufferCommitted(item_id=event.item_id, previous_item_id=event.previous_item_id),
            wire.ConversationItemAdded(previous_item_id=event.previous_item_id, item=item),
        ]

    def _transcribed(self, event: UserTurnTranscribed) -> list[ServerEvent]:
        content = [InputAudioContent(transcript=event.transcript)]
        item = UserMessageItem(id=event.item_id, status="completed", content=content)
        self._keep(item)
        usage = DurationUsage(seconds=round(event.audio_s, 3))
        return [
            wire.ConversationItemDone(previous_item_id=event.previous_item_id, item=item),
            wire.InputTranscriptionCompleted(item_id=event.item_id, transcript=event.transcript, usage=usage),
        ]

    def _started(self, event: ResponseStarted) -> list[ServerEvent]:
        self._previous_item[event.response_id] = event.previous_item_id
        item = AssistantMessageItem.of(event.item_id)
        self._keep(item)
        response = ResponseObject(id=event.response_id, status="in_progress", metadata=event.metadata)
        return [
            wire.ResponseCreated(response=response),
            wire.OutputItemAdded(response_id=event.response_id, item=item),
            wire.ConversationItemAdded(previous_item_id=event.previous_item_id, item=item),
            wire.ContentPartAdded(response_id=event.response_id, item_id=event.item_id, part=ContentPart()),
        ]

    def _ended(self, event: ResponseEnded) -> list[ServerEvent]:
        ids = {"response_id": event.response_id, "item_id": event.item_id}
        previous = self._previous_item.pop(event.response_id, None)
        status = "completed" if event.status == "completed" else "incomplete"
        item = AssistantMessageItem.of(event.item_id, event.text, status)
        self._keep(item)
        details = None
        if event.status == "cancelled":
            details = ResponseStatusDetails(type="cancelled", reason=event.reason)
        elif event.status == "failed":
            failure = event.failure or Problem("server_error", "the reply failed")
            error = StatusError(type=failure.kind, code=failure.code, message=failure.message)
            details = ResponseStatusDetails(type="failed", error=error)
        response = ResponseObject(
            id=event.response_id,
            status=event.status,
            status_details=details,
            output=[item],
            metadata=event.metadata,
        )
        out: list[ServerEvent] = []
        if event.stages_ms is not None:
            out.append(wire.UnmuteLatency(**ids, stages_ms=event.stages_ms))
        out += [
            wire.OutputAudioDone(**ids),
            wire.OutputTranscriptDone(**ids, transcript=event.text),
            wire.ContentPartDone(**ids, part=ContentPart(transcript=event.text)),
            wire.OutputItemDone(response_id=event.response_id, item=item),
            wire.ConversationItemDone(previous_item_id=previous, item=item),
            wire.ResponseDone(response=response),
        ]
        if event.response_id in self._streaming:
            self._streaming.discard(event.response_id)
            out.append(wire.OutputAudioBufferStopped(response_id=event.response_id))
        return out


_TRANSLATIONS: dict[type, Callable[[ServerEvents, Any], list[ServerEvent]]] = {
    ResponseAudio: ServerEvents._audio,
    ResponseText: ServerEvents._text,
    Problem: ServerEvents._problem,
    SpeechStarted: ServerEvents._speech_started,
    SpeechStopped: ServerEvents._speech_stopped,
    TranscriptDelta: ServerEvents._transcript,
    UserTurnCommitted: ServerEvents._committed,
    UserTurnTranscribed: ServerEvents._transcribed,
    InputCleared: ServerEvents._cleared,
    IdleTimeout: ServerEvents._idle,
    PreparedReplyDropped: ServerEvents._dropped,
    ResponseStarted: ServerEvents._started,
    ResponseEnded: ServerEvents._ended,
    PlaybackCleared: ServerEvents._playback_cleared,
    ItemTruncated: ServerEvents._truncated,
}
