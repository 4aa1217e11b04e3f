"""A reply's output items: its message (once it has words) and the functions it calls.

Each item takes its place in the conversation when it starts, after the reply's previous
item (or the reply's item before it), so a user turn committed meanwhile stays after the
reply. An out-of-band reply places nothing. Tool-call pieces are assembled by their
index: a new index starts a call and completes the one before (the LLM server streams
calls one after another); the end of the stream completes the last; a cut leaves the open
ones `incomplete`.

Every change goes through `act`, which the run defers while it is held (a reply prepared
before the user's turn was sure), so nothing is placed or announced before its release.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from orchestrator.clients.llm_request import ToolCallDelta
from orchestrator.pipeline.events import (
    FunctionCallArguments,
    FunctionCallDone,
    FunctionCallStarted,
    ReplyMessageStarted,
    SessionEvent,
    new_id,
)
from orchestrator.pipeline.history import History
from orchestrator.pipeline.items import FunctionCall, Item, Message, snapshot

Action = Callable[[], None]


class ReplyOutput:
    """The items of reply `response_id`; `history` is None for an out-of-band reply."""

    def __init__(
        self,
        response_id: str,
        message: Message,
        history: History | None,
        act: Callable[[Action], None],
        emit: Callable[[SessionEvent], None],
    ) -> None:
        self.response_id = response_id
        self.message = message
        self.outputs: list[Item] = []  # the announced items, in the order they started
        self._history, self._act, self._emit = history, act, emit
        self._previous: str | None = None  # the item the next one follows
        self._has_words = False
        self._calls: dict[int, FunctionCall] = {}  # by the LLM's call index
        self._open: list[FunctionCall] = []

    def begin(self, previous_item_id: str | None) -> None:
        """The reply's place: after `previous_item_id` (at its start, or its release)."""
        self._previous = previous_item_id

    @property
    def has_message(self) -> bool:
        """The message was announced (the reply had words)."""
        return any(item is self.message for item in self.outputs)

    def words_begin(self) -> None:
        """The reply has words: its message starts (the first time only)."""
        if not self._has_words:
            self._has_words = True
            self._act(self._start_message)

    def tool_delta(self, delta: ToolCallDelta) -> None:
        """A piece of a tool call, as the LLM streams it."""
        call = self._calls.get(delta.index)
        if call is None:
            if not delta.name:
                return  # a piece of a call that never said its name: nothing to call
            self.close_calls(complete=True)
            # Our own call id, not the LLM server's: vLLM's are 46 characters, and clients
            # keep OpenAI's limit of 32 (LiveKit hashes a longer one, which then names no call).
            call = FunctionCall(new_id("item"), new_id("call"), delta.name, status="in_progress")
            self._calls[delta.index] = call
            self._open.append(call)
            self._act(partial(self._start_call, call))
        if delta.arguments:
            call.arguments += delta.arguments
            event = FunctionCallArguments(self.response_id, call.item_id, call.call_id, delta.arguments)
            self._act(partial(self._emit, event))

    def close_calls(self, *, complete: bool) -> None:
        """The open calls are over: their arguments complete, or cut short."""
        for call in self._open:
            self._act(partial(self._close_call, call, complete))
        self._open = []

    def _start_message(self) -> None:
        previous = self._place(self.message)
        self.outputs.append(self.message)
        self._emit(ReplyMessageStarted(self.response_id, snapshot(self.message), previous))

    def _start_call(self, call: FunctionCall) -> None:
        previous = self._place(call)
        self.outputs.append(call)
        self._emit(FunctionCallStarted(self.response_id, snapshot(call), previous))

    def _close_call(self, call: FunctionCall, complete: bool) -> None:
        call.status = "completed" if complete else "incomplete"
        self._emit(FunctionCallDone(self.response_id, snapshot(call)))

    def _place(self, item: Item) -> str | None:
        """Put `item` after the reply's latest item; the id of the item it follows."""
        if self._history is None:
            return None
        try:
            previous = self._history.insert_after(item, self._previous)
        except KeyError:  # the item it was to follow was deleted meanwhile
            previous = self._history.append(item)
        self._previous = item.item_id
        return previous
