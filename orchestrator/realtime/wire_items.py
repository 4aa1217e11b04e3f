"""The conversation items of our server events, and how the pipeline's items become them.

They mirror the `openai` package's GA item models (`RealtimeConversationItemUserMessage`,
`...AssistantMessage`, `...SystemMessage`, `...FunctionCall`, `...FunctionCallOutput`)
for what we send; tests/unit/orchestrator/test_server_events.py checks the parity. A spoken message's
content is audio with its transcript, a typed one's is text.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from orchestrator.pipeline.items import FunctionCall, FunctionCallOutput, Item, Message

ItemStatus = Literal["completed", "incomplete", "in_progress"]


class ServerShape(BaseModel):
    """Base of everything we send: unknown fields are refused rather than sent."""

    model_config = ConfigDict(frozen=False, extra="forbid")


class InputAudioContent(ServerShape):
    """A user message's audio; its transcript arrives in its own transcription events."""

    type: Literal["input_audio"] = "input_audio"
    transcript: str | None = None


class InputTextContent(ServerShape):
    """A typed user (or system) message's text."""

    type: Literal["input_text"] = "input_text"
    text: str


class OutputAudioContent(ServerShape):
    """An assistant message's audio, with the text that was spoken."""

    type: Literal["output_audio"] = "output_audio"
    transcript: str | None = None


class OutputTextContent(ServerShape):
    """A text-only reply's text."""

    type: Literal["output_text"] = "output_text"
    text: str


class _Item(ServerShape):
    id: str
    object: Literal["realtime.item"] = "realtime.item"
    status: ItemStatus


class UserMessageItem(_Item):
    """A user's turn: spoken (audio) or typed (text)."""

    type: Literal["message"] = "message"
    role: Literal["user"] = "user"
    content: list[Annotated[InputAudioContent | InputTextContent, Field(discriminator="type")]]

    @classmethod
    def of(cls, item_id: str, status: ItemStatus = "completed") -> UserMessageItem:
        """A spoken turn (its transcript is sent by the transcription events)."""
        return cls(id=item_id, status=status, content=[InputAudioContent()])


class AssistantMessageItem(_Item):
    """A reply's words; a cancelled or failed reply's item is `incomplete`."""

    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    content: list[Annotated[OutputAudioContent | OutputTextContent, Field(discriminator="type")]]

    @classmethod
    def of(
        cls, item_id: str, text: str | None = None, status: ItemStatus = "in_progress", *, spoken: bool = True
    ) -> AssistantMessageItem:
        """No content while it is generated, then one audio (or text) part with `text`."""
        part = OutputAudioContent(transcript=text) if spoken else OutputTextContent(text=text or "")
        return cls(id=item_id, status=status, content=[] if text is None else [part])


class SystemMessageItem(_Item):
    type: Literal["message"] = "message"
    role: Literal["system"] = "system"
    content: list[InputTextContent]


class FunctionCallItem(_Item):
    """A function the reply calls; `arguments` is JSON text, complete once `status` is."""

    type: Literal["function_call"] = "function_call"
    call_id: str
    name: str
    arguments: str


class FunctionCallOutputItem(_Item):
    """The client's result of the call `call_id`."""

    type: Literal["function_call_output"] = "function_call_output"
    call_id: str
    output: str


def _tag(value: Any) -> str | None:
    """Messages are told apart by role (the SDK does the same), other items by type."""
    get = value.get if isinstance(value, dict) else lambda name: getattr(value, name, None)
    kind = get("type")
    return f"message:{get('role')}" if kind == "message" else kind


ConversationItem = Annotated[
    Annotated[UserMessageItem, Tag("message:user")]
    | Annotated[AssistantMessageItem, Tag("message:assistant")]
    | Annotated[SystemMessageItem, Tag("message:system")]
    | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")],
    Discriminator(_tag),
]
WireItem = (
    UserMessageItem | AssistantMessageItem | SystemMessageItem | FunctionCallItem | FunctionCallOutputItem
)


def wire_item(item: Item, *, fresh: bool = False) -> WireItem:
    """The item as the client sees it; `fresh`: as it starts (no content, no arguments yet)."""
    if isinstance(item, FunctionCall):
        arguments = "" if fresh else item.arguments
        status = "in_progress" if fresh else item.status
        return FunctionCallItem(
            id=item.item_id, status=status, call_id=item.call_id, name=item.name, arguments=arguments
        )
    if isinstance(item, FunctionCallOutput):
        return FunctionCallOutputItem(
            id=item.item_id, status="completed", call_id=item.call_id, output=item.output
        )
    return _message(item, fresh)


def _message(item: Message, fresh: bool) -> WireItem:
    if item.role == "assistant":  # no content until the reply ends
        text = None if fresh or item.status == "in_progress" else item.text
        return AssistantMessageItem.of(item.item_id, text, item.status, spoken=item.spoken)
    if item.role == "system":
        return SystemMessageItem(
            id=item.item_id, status=item.status, content=[InputTextContent(text=item.text)]
        )
    pending = item.status == "in_progress"
    content = (
        InputAudioContent(transcript=None if pending else item.text)
        if item.spoken
        else InputTextContent(text=item.text)
    )
    return UserMessageItem(id=item.item_id, status=item.status, content=[content])
