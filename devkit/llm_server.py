"""A fake OpenAI-compatible chat server: deterministic LLM behaviour for tests, a set speed for
benchmarks.

Every completion streams its reply as vLLM's OpenAI server does: a first chunk with the role,
then the reply one word per token, the first `first_token_delay_s` after the request and each
next one `token_delay_s` later (each token is due at a fixed time from the request, so event-loop
delays under load do not add up along the reply), at most the request's `max_tokens` words.

Two ways to say what it answers:

- scripted (the tests): `POST /control` sets what the next completions do (reply text, tool
  calls, delays, HTTP errors); `GET /requests` returns the messages each completion was asked
  with, `GET /tools` the tools and tool_choice it was offered (with the request's system prompt).
- at a set speed (the benchmarks): `--ttft-ms`, `--tpot-ms` and `--reply` fix the delays and
  the reply from the start, so the LLM's share of a turn is known, and what a load test measures
  around it is the STT, the TTS and the orchestrator.

`GET /stats` counts requests and completed and cancelled streams (a client that hangs up
mid-stream, e.g. an interrupted reply, is a cancellation).

Tool calls stream as vLLM streams them: after the reply's words (if any), each call opens with
one chunk holding its `index`, `id`, `type` and function `name`, then its JSON arguments come in
pieces under the same `index`; the last chunk's finish_reason is "tool_calls". A request whose
last message is a tool result is answered with `after_tool` (its "{output}" replaced by that
result), as a model answers with what a tool returned.

    python -m devkit.llm_server --port 3002                              # scripted
    python -m devkit.llm_server --port 3002 --ttft-ms 200 --tpot-ms 25   # at a set speed
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
REPLY = "Sure. Here is a short answer for you, spoken word by word."


class ScriptedCall(BaseModel):
    """A function the reply calls, with its arguments as JSON text."""

    name: str
    arguments: str = "{}"


class Script(BaseModel):
    """What the next completions do."""

    reply: str = REPLY
    first_token_delay_s: float = 0.0
    token_delay_s: float = 0.0  # between chunks: words and argument pieces
    fail_status: int | None = None
    tool_calls: list[ScriptedCall] = []  # made after the reply's words, when tools are offered
    argument_pieces: int = 3  # each call's arguments come in this many pieces
    after_tool: str | None = None  # the answer to a tool result


def chunk(created: int, delta: dict[str, Any], finish: str | None = None) -> str:
    """One server-sent event of a streamed chat completion."""
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    body = {"id": "chat-1", "object": "chat.completion.chunk", "created": created, "model": MODEL}
    return f"data: {json.dumps(body | {'choices': [choice]})}\n\n"


def deltas(script: Script, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The reply's deltas for this request: its words (at most `max_tokens`), then its calls'
    opening chunks and argument pieces (when the request offers tools)."""
    messages = body["messages"]
    if messages and messages[-1].get("role") == "tool" and script.after_tool is not None:
        words, calls = script.after_tool.replace("{output}", str(messages[-1]["content"])), []
    else:
        words, calls = script.reply, script.tool_calls if body.get("tools") else []
    spoken = words.split(" ")[: body.get("max_tokens") or None] if words else []
    out: list[dict[str, Any]] = [{"content": (" " if i else "") + word} for i, word in enumerate(spoken)]
    for index, call in enumerate(calls):
        opening = {"id": f"chatcmpl-tool-{secrets.token_hex(8)}", "type": "function"}
        function = {"name": call.name, "arguments": ""}
        out.append({"tool_calls": [{"index": index, **opening, "function": function}]})
        size = max(1, -(-len(call.arguments) // max(1, script.argument_pieces)))
        for start in range(0, len(call.arguments), size):
            piece = call.arguments[start : start + size]
            out.append({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    return out


def build_app(script: Script | None = None) -> FastAPI:
    """The server, answering with `script` until `POST /control` sets another."""
    app = FastAPI()
    state: dict[str, Any] = {"script": script or Script(), "requests": [], "tools": []}
    stats = {"requests": 0, "completed": 0, "cancelled": 0}

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
    async def get_stats() -> dict[str, int]:
        return stats

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "devkit"}]}

    @app.post("/v1/chat/completions", response_model=None)
    async def completions(request: Request) -> StreamingResponse | JSONResponse:
        start = time.monotonic()
        body = await request.json()
        script: Script = state["script"]
        stats["requests"] += 1
        state["requests"].append(body["messages"])
        first = body["messages"][0] if body["messages"] else {}
        system = first.get("content") if first.get("role") == "system" else None
        offered = {"tools": body.get("tools"), "tool_choice": body.get("tool_choice"), "system": system}
        state["tools"].append(offered)
        if script.fail_status is not None:
            return JSONResponse(
                {"error": {"message": "scripted failure", "type": "server_error"}},
                status_code=script.fail_status,
            )
        pieces = deltas(script, body)

        async def chunks() -> AsyncIterator[str]:
            created = int(time.time())
            try:
                yield chunk(created, {"role": "assistant", "content": ""})
                for i, delta in enumerate(pieces):
                    due = start + script.first_token_delay_s + i * script.token_delay_s
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                    yield chunk(created, delta)
                calls = any("tool_calls" in delta for delta in pieces)
                yield chunk(created, {}, "tool_calls" if calls else "stop")
                yield "data: [DONE]\n\n"
                stats["completed"] += 1
            except (asyncio.CancelledError, GeneratorExit):
                stats["cancelled"] += 1
                raise

        return StreamingResponse(chunks(), media_type="text/event-stream")

    return app


def main() -> None:
    """CLI: serve the fake LLM (on loopback unless told otherwise)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True)
    # 0.0.0.0 only inside a container, where the port is reached over the container network.
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--ttft-ms", type=float, default=0.0, help="time to first token")
    parser.add_argument("--tpot-ms", type=float, default=0.0, help="time per output token after the first")
    parser.add_argument("--reply", default=REPLY, help="the reply every completion streams")
    args = parser.parse_args()
    pace = {"first_token_delay_s": args.ttft_ms / 1000, "token_delay_s": args.tpot_ms / 1000}
    script = Script(reply=args.reply, **pace)
    uvicorn.run(build_app(script), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
