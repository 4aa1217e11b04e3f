"""A scripted OpenAI-compatible chat server for deterministic LLM behaviour in tests.

`POST /control` sets what the next completions do (reply text, tool calls, delays, HTTP
errors); `GET /requests` returns the messages each completion was asked with, `GET /tools`
the tools and tool_choice it was offered; `GET /stats` counts completed and cancelled
streams (a client that hangs up mid-stream is a cancellation).

Tool calls stream as vLLM's OpenAI server streams them: after the reply's words (if any),
each call opens with one chunk holding its `index`, `id`, `type` and function `name`, then
its JSON arguments come in pieces under the same `index`; the last chunk's finish_reason is
"tool_calls". A request whose last message is a tool result is answered with `after_tool`
(its "{output}" replaced by that result), as a model answers with what a tool returned.

    python -m tests.llm_server --port 3002
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel

MODEL = "scripted-llm"


class ScriptedCall(BaseModel):
    """A function the reply calls, with its arguments as JSON text."""

    name: str
    arguments: str = "{}"


class Script(BaseModel):
    """What the next completions do."""

    reply: str = "Sure. Here is a short answer for you, spoken word by word."
    first_token_delay_s: float = 0.0
    token_delay_s: float = 0.0  # between chunks: words and argument pieces
    fail_status: int | None = None
    tool_calls: list[ScriptedCall] = []  # made after the reply's words, when tools are offered
    argument_pieces: int = 3  # each call's arguments come in this many pieces
    after_tool: str | None = None  # the answer to a tool result


def chunk(created: int, delta: dict[str, Any], finish: str | None = None) -> str:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    body = {"id": "chat-1", "object": "chat.completion.chunk", "created": created, "model": MODEL}
    return f"data: {json.dumps(body | {'choices': [choice]})}\n\n"


def deltas(script: Script, messages: list[dict[str, Any]], tools_offered: bool) -> list[dict[str, Any]]:
    """The reply's deltas: its words, then its calls' opening chunks and argument pieces."""
    if messages and messages[-1].get("role") == "tool" and script.after_tool is not None:
        words, calls = script.after_tool.replace("{output}", str(messages[-1]["content"])), []
    else:
        words, calls = script.reply, script.tool_calls if tools_offered else []
    out: list[dict[str, Any]] = [
        {"content": (" " if i else "") + word} for i, word in enumerate(words.split(" ")) if words
    ]
    for index, call in enumerate(calls):
        opening = {"id": f"chatcmpl-tool-{secrets.token_hex(8)}", "type": "function"}
        function = {"name": call.name, "arguments": ""}
        out.append({"tool_calls": [{"index": index, **opening, "function": function}]})
        size = max(1, -(-len(call.arguments) // max(1, script.argument_pieces)))
        for start in range(0, len(call.arguments), size):
            piece = call.arguments[start : start + size]
            out.append({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    return out


def build_app() -> FastAPI:
    app = FastAPI()
    state: dict[str, Any] = {"script": Script(), "requests": [], "tools": [], "completed": 0, "cancelled": 0}

    @app.post("/control")
    async def control(script: Script) -> dict[str, str]:
        state["script"] = script
        return {"status": "ok"}

    @app.get("/requests")
    async def requests() -> list[Any]:
        return state["requests"]

    @app.get("/tools")
    async def tools() -> list[Any]:
        return state["tools"]

    @app.get("/ready")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    @app.get("/stats")
    async def stats() -> dict[str, int]:
        return {"completed": state["completed"], "cancelled": state["cancelled"]}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "tests"}]}

    @app.post("/v1/chat/completions", response_model=None)
    async def completions(request: Request) -> StreamingResponse | JSONResponse:
        body = await request.json()
        script: Script = state["script"]
        state["requests"].append(body["messages"])
        state["tools"].append({"tools": body.get("tools"), "tool_choice": body.get("tool_choice")})
        if script.fail_status is not None:
            return JSONResponse(
                {"error": {"message": "scripted failure", "type": "server_error"}},
                status_code=script.fail_status,
            )
        pieces = deltas(script, body["messages"], bool(body.get("tools")))

        async def chunks() -> AsyncIterator[str]:
            created = int(time.time())
            try:
                yield chunk(created, {"role": "assistant", "content": ""})
                await asyncio.sleep(script.first_token_delay_s)
                for i, delta in enumerate(pieces):
                    if i:
                        await asyncio.sleep(script.token_delay_s)
                    yield chunk(created, delta)
                calls = any("tool_calls" in delta for delta in pieces)
                yield chunk(created, {}, "tool_calls" if calls else "stop")
                yield "data: [DONE]\n\n"
                state["completed"] += 1
            except (asyncio.CancelledError, GeneratorExit):
                state["cancelled"] += 1
                raise

        return StreamingResponse(chunks(), media_type="text/event-stream")

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    # 0.0.0.0 only inside a container, where the port is reached over the container network.
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    uvicorn.run(build_app(), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
