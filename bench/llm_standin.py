"""An OpenAI-compatible chat server that stands in for vLLM with a set speed.

Every completion streams the same reply, one word per token: the first after
`--ttft-ms`, each next one `--tpot-ms` later (capped by the request's `max_tokens`).
So the LLM's share of a turn is fixed, and what a load test measures around it is the
STT, the TTS and the orchestrator. `GET /stats` counts requests, completed and
cancelled streams (a client that hangs up mid-stream, e.g. an interrupted reply).

    python bench/llm_standin.py --port 3002 --ttft-ms 200 --tpot-ms 25
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

MODEL = "llm-standin"
# Plain lowercase words and light punctuation: every character is in the random-weight
# checkpoints' tokenizer, and ten words are about three seconds of speech.
REPLY = "Sure, here is a short answer, spoken one word at a time for you."


@dataclass(frozen=True)
class Pace:
    """How the stand-in answers."""

    ttft_s: float
    tpot_s: float
    reply: str = REPLY


def _chunk(created: int, delta: dict[str, str], finish: str | None = None) -> str:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    body = {"id": "chatcmpl-standin", "object": "chat.completion.chunk", "created": created}
    return f"data: {json.dumps(body | {'model': MODEL, 'choices': [choice]})}\n\n"


def build_app(pace: Pace) -> FastAPI:
    """The FastAPI app: /v1/models, /v1/chat/completions (always streamed: the orchestrator
    asks for a stream), /ready and /stats."""
    app = FastAPI()
    stats = {"requests": 0, "completed": 0, "cancelled": 0}

    @app.get("/ready")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    @app.get("/stats")
    async def get_stats() -> dict[str, int]:
        return stats

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "bench"}]}

    @app.post("/v1/chat/completions")
    async def completions(request: Request) -> StreamingResponse:
        body = await request.json()
        stats["requests"] += 1
        words = pace.reply.split(" ")[: body.get("max_tokens") or None]
        # Each token is due at a fixed time from the request, so event-loop delays under
        # load do not add up along the reply.
        start = time.monotonic()

        async def chunks() -> AsyncIterator[str]:
            created = int(time.time())
            try:
                for i, word in enumerate(words):
                    due = start + pace.ttft_s + i * pace.tpot_s
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                    yield _chunk(created, {"content": (" " if i else "") + word})
                yield _chunk(created, {}, finish="stop")
                yield "data: [DONE]\n\n"
                stats["completed"] += 1
            except (asyncio.CancelledError, GeneratorExit):
                stats["cancelled"] += 1
                raise

        return StreamingResponse(chunks(), media_type="text/event-stream")

    return app


def main() -> None:
    """CLI: serve the stand-in on loopback."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--ttft-ms", type=float, default=200.0, help="time to first token")
    parser.add_argument("--tpot-ms", type=float, default=25.0, help="time per output token after the first")
    parser.add_argument("--reply", default=REPLY, help="the reply every completion streams")
    args = parser.parse_args()
    pace = Pace(args.ttft_ms / 1000, args.tpot_ms / 1000, args.reply)
    uvicorn.run(build_app(pace), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
