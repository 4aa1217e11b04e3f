"""services/llm/gemma3-tools.jinja, rendered as vLLM renders chat templates (through
`transformers`: a sandboxed Jinja environment, trim_blocks and lstrip_blocks, its `tojson`),
on the messages the orchestrator sends: turns alternate, the system prompt and the functions
open the first user turn, and a call is rendered in the form vLLM's pythonic parser reads."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

TEMPLATE = Path(__file__).resolve().parents[3] / "services/llm/gemma3-tools.jinja"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def render(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> str:
    def tojson(value: Any, indent: int | None = None) -> str:
        return json.dumps(value, ensure_ascii=False, indent=indent)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    template = env.from_string(TEMPLATE.read_text())
    return template.render(messages=messages, tools=tools, bos_token="<bos>", add_generation_prompt=True)


def turns(prompt: str) -> list[tuple[str, str]]:
    """(role, text) of each turn; the generation prompt is the last, empty one."""
    body = prompt.removeprefix("<bos>")
    parts = [p for p in body.split("<start_of_turn>") if p]
    return [(p.split("\n", 1)[0], p.split("\n", 1)[1].removesuffix("<end_of_turn>\n")) for p in parts]


def test_without_tools_it_is_gemmas_own_format():
    prompt = render(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello."},
            {"role": "assistant", "content": "Hi!"},
            {"role": "user", "content": "Bye."},
        ]
    )
    assert prompt.startswith("<bos><start_of_turn>user\n")
    assert turns(prompt) == [
        ("user", "Be brief.\n\nHello."),
        ("model", "Hi!"),
        ("user", "Bye."),
        ("model", ""),
    ]


def test_functions_calls_and_results():
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
    }
    other = {
        "id": "call_2",
        "type": "function",
        "function": {"name": "get_time", "arguments": {"exact": True}},
    }
    prompt = render(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather and time?"},
            {"role": "assistant", "content": "Let me check.", "tool_calls": [call, other]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_2", "content": "noon"},
        ],
        tools=[WEATHER],
    )
    (_, first), (_, model), (_, results), generation = turns(prompt)
    assert first.startswith("Be brief.\n\nYou can call the functions listed below.")
    assert json.dumps(WEATHER["function"], indent=2) in first and first.endswith("Weather and time?")
    text, calls = model.split("\n")
    assert text == "Let me check." and calls == '[get_weather(city="Paris"), get_time(exact=True)]'
    # vLLM's pythonic parser reads a Python list of calls with literal keyword arguments.
    parsed = ast.parse(calls).body[0].value
    assert isinstance(parsed, ast.List) and all(isinstance(c, ast.Call) for c in parsed.elts)
    assert [ast.literal_eval(k.value) for c in parsed.elts for k in c.keywords] == ["Paris", True]
    assert results == "Result of get_weather: sunny\nResult of get_time: noon"
    assert generation == ("model", "")
