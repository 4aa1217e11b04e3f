"""A scripted OpenAI-compatible chat server for deterministic LLM behaviour in tests.

`POST /control` sets what the next completions do (reply text, delays, HTTP errors);
`GET /requests` returns the messages each completion was asked with; `GET /stats` counts
completed and cancelled streams (a client that hangs up mid-stream is a cancellation).

    python -m tests.llm_server --port 3002
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel

MODEL = "scripted-llm"


class Script(BaseModel):
    """What the next completions do."""

    reply: str = "Sure. Here is a short answer for you, spoken word by word."
    first_token_delay_s: float = 0.0
    token_delay_s: float = 0.0
    fail_status: int | None = None


def build_app() -> FastAPI:
    app = FastAPI()
    state: dict[str, Any] = {"script": Script(), "requests": [], "completed": 0, "cancelled": 0}

    @app.post("/control")
    async def control(script: Script) -> dict[str, str]:
        state["script"] = script
        return {"status": "ok"}

    @app.get("/requests")
    async def requests() -> list[Any]:
        return state["requests"]

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
        if script.fail_status is not None:
            return JSONResponse(
                {"error": {"message": "scripted failure", "type": "server_error"}},
                status_code=script.fail_status,
            )

        async def chunks() -> AsyncIterator[str]:
            created = int(time.time())
            try:
                await asyncio.sleep(script.first_token_delay_s)
                for i, word in enumerate(script.reply.split(" ")):
                    if i:
                        await asyncio.sleep(script.token_delay_s)
                    delta = {"content": (" " if i else "") + word}
                    choice = {"index": 0, "delta": delta, "finish_reason": None}
                    chunk = {"id": "chat-1", "object": "chat.completion.chunk", "created": created}
                    chunk |= {"model": MODEL, "choices": [choice]}
                    yield f"data: {json.dumps(chunk)}\n\n"
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
