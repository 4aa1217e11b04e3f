"""The conversation's items, in the pipeline's own terms: messages, function calls and
their outputs. A spoken turn and a typed message are the same kind of item (a `Message`);
`spoken` only says which way it came. The wire forms live in `orchestrator/realtime`."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, TypeVar

ItemStatus = Literal["in_progress", "completed", "incomplete"]
Role = Literal["user", "assistant", "system"]


@dataclass
class Message:
    """A user's turn or message, a reply's words, or a system message (empty until known)."""

    item_id: str
    role: Role
    text: str = ""
    spoken: bool = True  # a spoken turn / a reply with a voice; else typed or text-only
    status: ItemStatus = "completed"


@dataclass
class FunctionCall:
    """The assistant asks the client to run a function; `arguments` is JSON text."""

    item_id: str
    call_id: str
    name: str
    arguments: str = ""
    status: ItemStatus = "completed"


@dataclass
class FunctionCallOutput:
    """The client's result of the function call `call_id`."""

    item_id: str
    call_id: str
    output: str


Item = Message | FunctionCall | FunctionCallOutput


AnyItem = TypeVar("AnyItem", Message, FunctionCall, FunctionCallOutput)


def snapshot(item: AnyItem) -> AnyItem:
    """A copy that later changes to `item` (a reply's text filling in) do not reach."""
    return replace(item)


def text_of(item: Item) -> str:
    """What of the item counts against the context budget."""
    if isinstance(item, Message):
        return item.text
    if isinstance(item, FunctionCall):
        return item.name + item.arguments
    return item.output
