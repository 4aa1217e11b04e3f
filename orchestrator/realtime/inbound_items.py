"""Client items and tools -> the pipeline's items and tools."""

from __future__ import annotations

import numpy as np

from orchestrator.pipeline.config import Tool
from orchestrator.pipeline.events import new_id
from orchestrator.pipeline.items import FunctionCall, FunctionCallOutput, Item, Message
from orchestrator.realtime.client_events import EventError
from orchestrator.realtime.client_items import (
    AssistantMessageParam,
    FunctionCallOutputParam,
    FunctionCallParam,
    FunctionToolParam,
    InputAudioPart,
    ItemReferenceParam,
    OutputAudioPart,
    SystemMessageParam,
    UserMessageParam,
)
from orchestrator.realtime.inbound_audio import pcm16_audio
from orchestrator.realtime.session_model import FunctionTool, ToolChoice

ItemParam = (
    UserMessageParam
    | AssistantMessageParam
    | SystemMessageParam
    | FunctionCallParam
    | FunctionCallOutputParam
)


def pipeline_item(
    param: ItemParam, max_audio_chars: int, event_id: str | None
) -> tuple[Item, np.ndarray | None]:
    """The item to put in the conversation, and the audio to transcribe for it (if any)."""
    item_id = param.id or new_id("item")
    if isinstance(param, FunctionCallParam):
        return FunctionCall(item_id, param.call_id, param.name, param.arguments), None
    if isinstance(param, FunctionCallOutputParam):
        return FunctionCallOutput(item_id, param.call_id, param.output), None
    if isinstance(param, UserMessageParam) and isinstance(clip := param.content[0], InputAudioPart):
        return Message(item_id, "user", spoken=True), pcm16_audio(
            clip.audio, max_audio_chars, event_id, "item"
        )
    if isinstance(param, AssistantMessageParam):
        spoken = all(isinstance(part, OutputAudioPart) for part in param.content)
        text = " ".join(
            part.transcript if isinstance(part, OutputAudioPart) else part.text for part in param.content
        )
        return Message(item_id, "assistant", text, spoken=spoken), None
    text = " ".join(part.text for part in param.content)  # type: ignore[union-attr]  (text parts only here)
    return Message(item_id, param.role, text, spoken=False), None


def context_entry(
    param: ItemParam | ItemReferenceParam, max_audio_chars: int, event_id: str | None
) -> Item | str:
    """An entry of a `response.create`'s `input`: an item, or the id of one it refers to."""
    if isinstance(param, ItemReferenceParam):
        return param.id
    item, audio = pipeline_item(param, max_audio_chars, event_id)
    if audio is not None:
        what = "input_audio in a response's input is not transcribed; create it as an item first"
        raise EventError("invalid_value", what, event_id, "response.input")
    return item


def function_tools(params: list[FunctionToolParam], event_id: str | None) -> list[FunctionTool]:
    """The tools as the session shows them (defaults filled in); names must differ."""
    tools = [
        FunctionTool(name=p.name, description=p.description or "")
        if p.parameters is None
        else FunctionTool(name=p.name, description=p.description or "", parameters=p.parameters)
        for p in params
    ]
    names = [tool.name for tool in tools]
    if len(set(names)) != len(names):
        raise EventError("invalid_value", "two tools have the same name", event_id, "tools")
    return tools


def pipeline_tools(tools: list[FunctionTool]) -> tuple[Tool, ...]:
    return tuple(Tool(t.name, t.description, t.parameters) for t in tools)


def pipeline_choice(choice: ToolChoice) -> str:
    """ "auto", "none", "required", or the name of the one function to call."""
    return choice if isinstance(choice, str) else choice.name


def check_choice(
    choice: ToolChoice | None, tools: list[FunctionTool], event_id: str | None, param: str
) -> None:
    """A `tool_choice` naming a function must name one of the tools."""
    if choice is not None and not isinstance(choice, str) and choice.name not in {t.name for t in tools}:
        what = f"tool_choice names {choice.name!r}, which is not among the tools"
        raise EventError("invalid_value", what, event_id, param)
