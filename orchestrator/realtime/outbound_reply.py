"""A reply's domain events -> its server events, in the order GA clients expect.

- `response.created` when it starts;
- its message, at the first words: `response.output_item.added`, `conversation.item.added`
  and `response.content_part.added`, then transcript (or text) deltas and audio;
- each function call: `response.output_item.added` and `conversation.item.added` (empty),
  `response.function_call_arguments.delta`s, then `.done`, `response.output_item.done` and
  `conversation.item.done`;
- at its end, the message's `.done` events, then `response.done` with every output;
- `output_audio_buffer.started` at the first audio, `.stopped` once it has played out
  (after `response.done`), or `.cleared` instead when a barge-in or a cancel drops it.

An out-of-band reply sends no `conversation.item.*` events (it is in no conversation).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orchestrator.pipeline.events import (
    FunctionCallArguments,
    FunctionCallDone,
    FunctionCallStarted,
    PlaybackCleared,
    PlaybackFinished,
    Problem,
    ReplyMessageStarted,
    ResponseAudio,
    ResponseEnded,
    ResponseStarted,
    ResponseText,
)
from orchestrator.pipeline.items import Message
from orchestrator.realtime import server_events as wire
from orchestrator.realtime.extension_events import UnmuteLatency, UnmuteOutputAudioClear
from orchestrator.realtime.server_items import (
    ContentPart,
    ContentPartAdded,
    ContentPartDone,
    OutputAudioDelta,
    OutputAudioDone,
    OutputTextDelta,
    OutputTextDone,
    OutputTranscriptDelta,
    OutputTranscriptDone,
    ResponseObject,
    ResponseStatusDetails,
    ServerEvent,
    StatusError,
    TextPart,
)
from orchestrator.realtime.wire_items import AssistantMessageItem, WireItem, wire_item


def pcm16_base64(pcm: np.ndarray) -> str:
    """float32 samples -> base64 little-endian PCM16 (OpenAI's `audio/pcm`)."""
    return base64.b64encode((np.clip(pcm, -1.0, 1.0) * 32767).astype("<i2").tobytes()).decode()


@dataclass
class Reply:
    """What the translation of one reply needs until it ends."""

    text_only: bool
    in_conversation: bool
    outputs: list[str] = field(default_factory=list)  # item ids, by output index
    previous: dict[str, str | None] = field(default_factory=dict)  # item id -> the item before it


class ReplyEvents:
    """The per-connection state of the replies being translated."""

    def __init__(self, conversation_id: str) -> None:
        self.conversation_id = conversation_id
        self._replies: dict[str, Reply] = {}  # by response id, until it ends
        self._streaming: set[str] = set()  # audio started, neither played out nor cleared

    def started(self, event: ResponseStarted) -> list[ServerEvent]:
        self._replies[event.response_id] = Reply(event.text_only, event.in_conversation)
        response = ResponseObject(
            id=event.response_id,
            status="in_progress",
            metadata=event.metadata,
            output_modalities=["text"] if event.text_only else ["audio"],
            conversation_id=self.conversation_id if event.in_conversation else None,
        )
        return [wire.ResponseCreated(response=response)]

    def message_started(self, event: ReplyMessageStarted) -> list[ServerEvent]:
        reply = self._replies[event.response_id]
        out = self._added(event.response_id, reply, wire_item(event.item, fresh=True), event.previous_item_id)
        part = TextPart() if reply.text_only else ContentPart()
        return [*out, ContentPartAdded(**self._ids(event.response_id, event.item.item_id), part=part)]

    def text(self, event: ResponseText) -> list[ServerEvent]:
        ids = self._ids(event.response_id, event.item_id)
        if self._replies[event.response_id].text_only:
            return [OutputTextDelta(**ids, delta=event.text)]
        return [OutputTranscriptDelta(**ids, delta=event.text + " ")]

    def audio(self, event: ResponseAudio) -> list[ServerEvent]:
        ids = self._ids(event.response_id, event.item_id)
        delta = OutputAudioDelta(**ids, delta=pcm16_base64(event.pcm))
        if event.response_id in self._streaming:
            return [delta]
        self._streaming.add(event.response_id)
        return [wire.OutputAudioBufferStarted(response_id=event.response_id), delta]

    def call_started(self, event: FunctionCallStarted) -> list[ServerEvent]:
        reply = self._replies[event.response_id]
        return self._added(
            event.response_id, reply, wire_item(event.item, fresh=True), event.previous_item_id
        )

    def call_arguments(self, event: FunctionCallArguments) -> list[ServerEvent]:
        index = self._replies[event.response_id].outputs.index(event.item_id)
        ids = {"response_id": event.response_id, "item_id": event.item_id, "call_id": event.call_id}
        return [wire.FunctionCallArgumentsDelta(**ids, output_index=index, delta=event.delta)]

    def call_done(self, event: FunctionCallDone) -> list[ServerEvent]:
        reply, call = self._replies[event.response_id], event.item
        index = reply.outputs.index(call.item_id)
        out: list[ServerEvent] = []
        if call.status == "completed":
            ids = {"response_id": event.response_id, "item_id": call.item_id, "call_id": call.call_id}
            out.append(
                wire.FunctionCallArgumentsDone(
                    **ids, output_index=index, name=call.name, arguments=call.arguments
                )
            )
        return out + self._done(event.response_id, reply, wire_item(call))

    def ended(self, event: ResponseEnded) -> list[ServerEvent]:
        reply = self._replies[event.response_id]
        outputs: list[WireItem] = []
        out: list[ServerEvent] = []
        if event.stages_ms is not None:
            out.append(
                UnmuteLatency(response_id=event.response_id, item_id=event.item_id, stages_ms=event.stages_ms)
            )
        for item in event.outputs:
            if isinstance(item, Message):
                message = AssistantMessageItem.of(
                    item.item_id, event.text, item.status, spoken=not reply.text_only
                )
                out += self._message_done(event, reply, message)
                outputs.append(message)
            else:
                outputs.append(wire_item(item))
        response = ResponseObject(
            id=event.response_id,
            status=event.status,
            status_details=_details(event),
            output=outputs,
            output_modalities=["text"] if reply.text_only else ["audio"],
            metadata=event.metadata,
            conversation_id=self.conversation_id if reply.in_conversation else None,
        )
        del self._replies[event.response_id]
        return [*out, wire.ResponseDone(response=response)]

    def playback_cleared(self, event: PlaybackCleared) -> list[ServerEvent]:
        self._streaming.discard(event.response_id)
        return [
            UnmuteOutputAudioClear(response_id=event.response_id, item_id=event.item_id),
            wire.OutputAudioBufferCleared(response_id=event.response_id),
        ]

    def playback_finished(self, event: PlaybackFinished) -> list[ServerEvent]:
        if event.response_id not in self._streaming:
            return []
        self._streaming.discard(event.response_id)
        return [wire.OutputAudioBufferStopped(response_id=event.response_id)]

    def _message_done(
        self, event: ResponseEnded, reply: Reply, message: AssistantMessageItem
    ) -> list[ServerEvent]:
        ids = self._ids(event.response_id, event.item_id)
        if reply.text_only:
            part: list[ServerEvent] = [
                OutputTextDone(**ids, text=event.text),
                ContentPartDone(**ids, part=TextPart(text=event.text)),
            ]
        else:
            part = [
                OutputAudioDone(**ids),
                OutputTranscriptDone(**ids, transcript=event.text),
                ContentPartDone(**ids, part=ContentPart(transcript=event.text)),
            ]
        return part + self._done(event.response_id, reply, message)

    def _added(
        self, response_id: str, reply: Reply, item: WireItem, previous: str | None
    ) -> list[ServerEvent]:
        reply.outputs.append(item.id)
        reply.previous[item.id] = previous
        out: list[ServerEvent] = [
            wire.OutputItemAdded(response_id=response_id, output_index=len(reply.outputs) - 1, item=item)
        ]
        if reply.in_conversation:
            out.append(wire.ConversationItemAdded(previous_item_id=previous, item=item))
        return out

    def _done(self, response_id: str, reply: Reply, item: WireItem) -> list[ServerEvent]:
        index = reply.outputs.index(item.id)
        out: list[ServerEvent] = [wire.OutputItemDone(response_id=response_id, output_index=index, item=item)]
        if reply.in_conversation:
            out.append(wire.ConversationItemDone(previous_item_id=reply.previous[item.id], item=item))
        return out

    def _ids(self, response_id: str, item_id: str) -> dict[str, Any]:
        """The ids of a piece of the reply's message (its part is always the first)."""
        outputs = self._replies[response_id].outputs
        index = outputs.index(item_id) if item_id in outputs else 0
        return {"response_id": response_id, "item_id": item_id, "output_index": index}


def _details(event: ResponseEnded) -> ResponseStatusDetails | None:
    if event.status == "cancelled":
        return ResponseStatusDetails(type="cancelled", reason=event.reason)  # type: ignore[arg-type]
    if event.status == "failed":
        failure = event.failure or Problem("server_error", "the reply failed")
        error = StatusError(type=failure.kind, code=failure.code, message=failure.message)
        return ResponseStatusDetails(type="failed", error=error)
    return None
