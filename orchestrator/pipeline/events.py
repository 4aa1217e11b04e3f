"""What a session tells its client, in the pipeline's own terms.

The pipeline knows nothing of the wire: it emits these events, and `orchestrator/realtime`
translates each into OpenAI Realtime server events (one domain event may become several).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from orchestrator.pipeline.items import FunctionCall, Item, Message


def new_id(prefix: str) -> str:
    """Server-made ids, readable like OpenAI's (``item_...``, ``resp_...``)."""
    return f"{prefix}_{secrets.token_hex(8)}"


@dataclass(frozen=True, slots=True)
class Problem:
    """Something went wrong; `kind` says whose fault (the client's request, or a backend/ours)."""

    code: str
    message: str
    kind: Literal["invalid_request_error", "server_error"] = "server_error"
    client_event_id: str | None = None
    param: str | None = None


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    item_id: str
    audio_start_ms: int


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    item_id: str
    audio_end_ms: int


@dataclass(frozen=True, slots=True)
class TranscriptDelta:
    """A word of the user's turn, as the STT recognised it."""

    item_id: str
    text: str


@dataclass(frozen=True, slots=True)
class UserTurnCommitted:
    """The user's turn ended: its item enters the conversation after `previous_item_id`."""

    item_id: str
    previous_item_id: str | None


@dataclass(frozen=True, slots=True)
class UserTurnTranscribed:
    """The committed turn's transcript is final (after the STT flush)."""

    item_id: str
    previous_item_id: str | None
    transcript: str
    audio_s: float


@dataclass(frozen=True, slots=True)
class InputCleared:
    """The user's unfinished turn was dropped (`input_audio_buffer.clear`)."""


@dataclass(frozen=True, slots=True)
class IdleTimeout:
    """No speech for `idle_timeout_ms` after the last reply: an empty turn is committed."""

    item_id: str
    audio_start_ms: int
    audio_end_ms: int


@dataclass(frozen=True, slots=True)
class PreparedReplyDropped:
    """A reply prepared at a likely end was dropped unheard: the user went on speaking."""

    transcript: str  # the words it answered


@dataclass(frozen=True, slots=True)
class ItemCreated:
    """The client put an item in the conversation, after `previous_item_id`; an audio
    message is `in_progress` until its `UserTurnTranscribed`."""

    item: Item
    previous_item_id: str | None


@dataclass(frozen=True, slots=True)
class ItemDeleted:
    """The client took an item out of the conversation."""

    item_id: str


@dataclass(frozen=True, slots=True)
class ResponseStarted:
    """A reply begins (after `previous_item_id`); `item_id` is its message's, announced by
    `ReplyMessageStarted` once it has words. An out-of-band reply is in no conversation."""

    response_id: str
    item_id: str
    previous_item_id: str | None
    metadata: dict[str, str] | None
    text_only: bool = False
    in_conversation: bool = True


@dataclass(frozen=True, slots=True)
class ReplyMessageStarted:
    """The reply's first words: its message item starts, after `previous_item_id`."""

    response_id: str
    item: Message
    previous_item_id: str | None


@dataclass(frozen=True, slots=True)
class FunctionCallStarted:
    """The reply calls a function: its item starts (no arguments yet), after `previous_item_id`."""

    response_id: str
    item: FunctionCall
    previous_item_id: str | None


@dataclass(frozen=True, slots=True)
class FunctionCallArguments:
    """A piece of a call's JSON arguments."""

    response_id: str
    item_id: str
    call_id: str
    delta: str


@dataclass(frozen=True, slots=True)
class FunctionCallDone:
    """A call's arguments are complete, or (`incomplete`) its reply was cut short."""

    response_id: str
    item: FunctionCall


@dataclass(frozen=True, slots=True)
class ResponseText:
    """A word the reply's voice is about to say (text only: a piece of the reply's text)."""

    response_id: str
    item_id: str
    text: str


@dataclass(frozen=True, slots=True)
class ResponseAudio:
    """One frame of the reply's audio: float32 samples at 24 kHz."""

    response_id: str
    item_id: str
    pcm: np.ndarray


@dataclass(frozen=True, slots=True)
class ResponseEnded:
    """The reply is over: completed, cancelled (`reason`) or failed (`failure`)."""

    response_id: str
    item_id: str
    status: Literal["completed", "cancelled", "failed"]
    text: str  # what was generated (completed) or heard (cut short)
    metadata: dict[str, str] | None = None
    reason: str | None = None  # OpenAI's cancel reasons: turn_detected, client_cancelled
    failure: Problem | None = None
    audio_sent: bool = False
    stages_ms: dict[str, float | None] | None = field(default=None)
    outputs: tuple[Item, ...] = ()  # its message (if it had words) and calls, in the order they started


@dataclass(frozen=True, slots=True)
class PlaybackCleared:
    """The client must drop the reply's queued audio now (a barge-in or a cancel)."""

    response_id: str
    item_id: str


@dataclass(frozen=True, slots=True)
class PlaybackFinished:
    """The reply's audio has all played out on the client (as estimated in real time)."""

    response_id: str


@dataclass(frozen=True, slots=True)
class ItemTruncated:
    """An assistant item was cut to what the user heard (`conversation.item.truncate`)."""

    item_id: str
    audio_end_ms: int
    heard: str


SessionEvent = (
    Problem
    | SpeechStarted
    | SpeechStopped
    | TranscriptDelta
    | UserTurnCommitted
    | UserTurnTranscribed
    | InputCleared
    | IdleTimeout
    | PreparedReplyDropped
    | ItemCreated
    | ItemDeleted
    | ResponseStarted
    | ReplyMessageStarted
    | FunctionCallStarted
    | FunctionCallArguments
    | FunctionCallDone
    | ResponseText
    | ResponseAudio
    | ResponseEnded
    | PlaybackCleared
    | PlaybackFinished
    | ItemTruncated
)
