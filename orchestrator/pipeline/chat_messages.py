"""Conversation items -> the OpenAI chat messages the LLM is sent.

Chat templates expect a system message first, then a conversation that starts with the
user; a call's arguments on the assistant message that made it; and each tool result
right after, as a `tool` message. So:
- empty messages (noise, a reply interrupted before a word, a turn still pending) are
  left out, and two user messages left next to each other become one;
- system items join the system prompt (many templates take a system message only first);
- a function call goes to the LLM only once it is complete and its output is there, as a
  `tool_calls` entry of the assistant message before it; an output whose call is not
  there (left out, or trimmed from the budget) is left out too. A half call, cut by a
  barge-in or a cancel, never reaches the LLM.
"""

from __future__ import annotations

from typing import Any

from orchestrator.clients.llm_request import ChatMessage, ToolChoice
from orchestrator.pipeline.config import Tool
from orchestrator.pipeline.items import FunctionCall, FunctionCallOutput, Item, Message

FIXED_CHOICES = ("auto", "none", "required")


def chat_tools(tools: tuple[Tool, ...], choice: str) -> tuple[list[dict[str, Any]], ToolChoice]:
    """The chat-completions `tools` and `tool_choice` for these tools and this choice."""
    specs = [
        {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters or {"type": "object", "properties": {}},
            },
        }
        for tool in tools
    ]
    named = {"type": "function", "function": {"name": choice}}
    return specs, choice if choice in FIXED_CHOICES else named


def chat_messages(items: list[Item], system_prompt: str) -> list[ChatMessage]:
    """The system message, then `items` as chat messages, in order."""
    system = [system_prompt]
    answered = {i.call_id for i in items if isinstance(i, FunctionCallOutput)}
    sent_calls: set[str] = set()
    turns: list[ChatMessage] = []
    for item in items:
        if isinstance(item, Message):
            _message(item, system, turns)
        elif isinstance(item, FunctionCall):
            if item.status == "completed" and item.call_id in answered and turns:
                _call(item, turns)
                sent_calls.add(item.call_id)
        elif item.call_id in sent_calls:
            turns.append({"role": "tool", "tool_call_id": item.call_id, "content": item.output})
    return [{"role": "system", "content": "\n\n".join(system)}, *turns]


def _message(item: Message, system: list[str], turns: list[ChatMessage]) -> None:
    if not item.text.strip():
        return
    if item.role == "system":
        system.append(item.text)
    elif not turns and item.role != "user":
        return  # the conversation starts with the user
    elif turns and turns[-1]["role"] == item.role and "tool_calls" not in turns[-1]:
        turns[-1]["content"] += " " + item.text
    else:
        turns.append({"role": item.role, "content": item.text})


def _call(item: FunctionCall, turns: list[ChatMessage]) -> None:
    entry = {
        "id": item.call_id,
        "type": "function",
        "function": {"name": item.name, "arguments": item.arguments or "{}"},
    }
    last = turns[-1]
    if last["role"] == "assistant":
        last.setdefault("tool_calls", []).append(entry)
    else:
        # Content is a string, not null: some chat templates (Gemma's) refuse null content.
        turns.append({"role": "assistant", "content": "", "tool_calls": [entry]})
