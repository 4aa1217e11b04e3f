"""The conversation items and tools a client sends (`conversation.item.create`, a
`response.create`'s `input` and `tools`, a `session.update`'s `tools`), as pydantic models.

What we do not implement is refused by name, never silently dropped: image input, MCP
tools. Unknown fields are accepted and ignored, as elsewhere in client events.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from orchestrator.realtime.session_model import ToolName

MAX_ITEM_TEXT = 32_000  # characters of one message's text or one function output (~8k tokens)
ItemId = Annotated[str, Field(min_length=1, max_length=128)]
ItemText = Annotated[str, Field(max_length=MAX_ITEM_TEXT)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


class InputTextPart(_Model):
    type: Literal["input_text"]
    text: ItemText


class InputAudioPart(_Model):
    """Base64 PCM16, 24 kHz mono (the session's input format); the STT transcribes it."""

    type: Literal["input_audio"]
    audio: str = Field(min_length=1)


class OutputTextPart(_Model):
    type: Literal["output_text"]
    text: ItemText


class OutputAudioPart(_Model):
    """An assistant's spoken words, given by their transcript (audio is not replayed)."""

    type: Literal["output_audio"]
    transcript: ItemText = ""


def _no_images(parts: Any) -> Any:
    if isinstance(parts, list) and any(isinstance(p, dict) and p.get("type") == "input_image" for p in parts):
        raise ValueError("image input is not supported (the LLM here reads text only)")
    return parts


UserPart = Annotated[InputTextPart | InputAudioPart, Field(discriminator="type")]


def _text_or_one_clip(parts: list[UserPart]) -> list[UserPart]:
    if any(isinstance(p, InputAudioPart) for p in parts) and len(parts) > 1:
        raise ValueError("a message holds text parts or one input_audio part, not both")
    return parts


class UserMessageParam(_Model):
    """Typed text (`input_text` parts, joined), or one `input_audio` clip."""

    type: Literal["message"]
    id: ItemId | None = None
    role: Literal["user"]
    content: Annotated[
        list[UserPart],
        BeforeValidator(_no_images),
        AfterValidator(_text_or_one_clip),
        Field(min_length=1, max_length=16),
    ]


class AssistantMessageParam(_Model):
    type: Literal["message"]
    id: ItemId | None = None
    role: Literal["assistant"]
    content: list[Annotated[OutputTextPart | OutputAudioPart, Field(discriminator="type")]] = Field(
        min_length=1, max_length=16
    )


class SystemMessageParam(_Model):
    type: Literal["message"]
    id: ItemId | None = None
    role: Literal["system"]
    content: list[InputTextPart] = Field(min_length=1, max_length=16)


class FunctionCallParam(_Model):
    """A call the assistant made (a client may restore one, e.g. after reconnecting)."""

    type: Literal["function_call"]
    id: ItemId | None = None
    call_id: ItemId
    name: ToolName
    arguments: ItemText = ""


class FunctionCallOutputParam(_Model):
    """The result of the call `call_id`, for the model to read."""

    type: Literal["function_call_output"]
    id: ItemId | None = None
    call_id: ItemId
    output: ItemText


class ItemReferenceParam(_Model):
    """An item of the conversation, named by its id (only in a `response.create`'s `input`)."""

    type: Literal["item_reference"]
    id: ItemId


MessageParam = Annotated[
    UserMessageParam | AssistantMessageParam | SystemMessageParam, Field(discriminator="role")
]
ItemParam = Annotated[MessageParam | FunctionCallParam | FunctionCallOutputParam, Field(discriminator="type")]
InputParam = Annotated[
    MessageParam | FunctionCallParam | FunctionCallOutputParam | ItemReferenceParam,
    Field(discriminator="type"),
]


class FunctionToolParam(_Model):
    type: Literal["function"]
    name: ToolName
    description: str | None = Field(None, max_length=4096)
    parameters: dict[str, Any] | None = None


def _function_tools_only(tools: Any) -> Any:
    if isinstance(tools, list) and any(isinstance(t, dict) and t.get("type") == "mcp" for t in tools):
        raise ValueError("MCP tools are not supported; only function tools (the client runs them)")
    return tools


Tools = Annotated[list[FunctionToolParam], BeforeValidator(_function_tools_only), Field(max_length=128)]
