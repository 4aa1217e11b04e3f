"""What one chat completion is asked with, and the pieces its stream yields.

A reply streams text deltas and, where the request offered tools, tool-call deltas as an
OpenAI-compatible server (vLLM) sends them: the first delta of a call carries its `index`,
`id` and function `name`, the next ones carry pieces of its JSON `arguments` under the same
`index`; several calls in one reply have indexes 0, 1, ...; text may come before a call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from openai.types.chat import ChatCompletionChunk

ChatMessage = dict[str, Any]  # an OpenAI chat message (role, content, tool_calls, tool_call_id)
ToolChoice = str | dict[str, Any]  # "auto" / "none" / "required", or a named function


@dataclass(frozen=True, slots=True)
class LlmRequest:
    """The messages, the token cap, and the tools offered (chat-completions `tools` entries)."""

    messages: list[ChatMessage]
    max_tokens: int | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: ToolChoice | None = None  # sent only with tools

    def options(self) -> dict[str, Any]:
        """The request's keyword arguments beyond model, messages and sampling."""
        if not self.tools:
            return {"max_tokens": self.max_tokens}
        return {"max_tokens": self.max_tokens, "tools": self.tools, "tool_choice": self.tool_choice or "auto"}


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of the `index`-th tool call of a reply: its id and name come once, first."""

    index: int
    call_id: str | None = None
    name: str | None = None
    arguments: str = ""


LlmDelta = str | ToolCallDelta  # a text delta, or a piece of a tool call


def chunk_deltas(chunk: ChatCompletionChunk) -> list[LlmDelta]:
    """The text and tool-call pieces of one streamed chunk, in the order they apply."""
    if not chunk.choices:
        return []
    delta = chunk.choices[0].delta
    out: list[LlmDelta] = [delta.content] if delta.content else []
    for call in delta.tool_calls or []:
        function = call.function
        name = function.name if function is not None else None
        arguments = (function.arguments if function is not None else None) or ""
        if call.id or name or arguments:
            out.append(ToolCallDelta(call.index, call.id, name, arguments))
    return out
