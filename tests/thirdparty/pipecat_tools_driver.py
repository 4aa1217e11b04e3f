"""Pipecat's function calling through `OpenAIRealtimeLLMService` against our `/v1/realtime`: the
service in a pipeline with its context aggregators (as Pipecat's realtime examples run it),
two functions registered; after the greeting, a spoken turn calls one, Pipecat runs it and
returns its output, and the answer that follows uses it.

    .venv-clients/bin/python -m tests.thirdparty.pipecat_tools_driver --url ws://... --token T \\
        --llm http://... --out r.json
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from loguru import logger
from pipecat.adapters.schemas.function_schema import FunctionSchema
from pipecat.adapters.schemas.tools_schema import ToolsSchema
from pipecat.frames.frames import (
    InputAudioRawFrame,
    LLMRunFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.services.llm_service import FunctionCallParams
from pipecat.services.openai.realtime.llm import OpenAIRealtimeLLMService
from pipecat.workers.runner import WorkerRunner

from tests.thirdparty.driver_common import MIN_AUDIO_S, RATE, Microphone, run, script_llm, speech, stop, until
from tests.thirdparty.pipecat_driver import Replies

TOOLS = ToolsSchema(
    standard_tools=[
        FunctionSchema(
            name="get_weather",
            description="The weather in a city, today.",
            properties={"city": {"type": "string"}},
            required=["city"],
        ),
        FunctionSchema(name="get_time", description="The time now.", properties={}, required=[]),
    ]
)
TOOL_SCRIPT = {
    "reply": "Let me check.",
    "tool_calls": [{"name": "get_weather", "arguments": '{"city": "Paris"}'}],
    "after_tool": "In Paris it is {output} today.",
}


class Assistant:
    """The functions Pipecat ran, the user's turns as its context got them, and the transcripts
    of the assistant's finished items."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, dict[str, Any]]] = []
        self.heard: list[str] = []
        self.said: list[str] = []

    async def on_user_message(self, _aggregator: Any, message: Any) -> None:
        if message.content.strip():
            self.heard.append(message.content.strip())

    async def run_function(self, params: FunctionCallParams) -> None:
        self.runs.append((params.function_name, dict(params.arguments)))
        await params.result_callback("sunny" if params.function_name == "get_weather" else "noon")

    async def on_item_updated(self, _service: Any, _item_id: str, item: Any) -> None:
        if (
            item is not None
            and item.type == "message"
            and item.role == "assistant"
            and item.status == "completed"
        ):
            transcript = (item.content or [None])[0]
            if transcript is not None and transcript.transcript:
                self.said.append(transcript.transcript)


async def scenario(args: argparse.Namespace, report: dict[str, Any]) -> None:
    logger.remove()  # Pipecat logs every frame link at DEBUG; the test shows warnings and errors
    logger.add(sys.stderr, level="WARNING")
    logger.add(lambda message: report["errors"].append(message.record["message"]), level="ERROR")
    service = OpenAIRealtimeLLMService(api_key=args.token, base_url=f"{args.url}/v1/realtime")
    assistant = Assistant()
    service.register_function("get_weather", assistant.run_function)
    service.register_function("get_time", assistant.run_function)
    service.add_event_handler("on_conversation_item_updated", assistant.on_item_updated)
    user, bot = LLMContextAggregatorPair(LLMContext([], TOOLS))
    user.add_event_handler("on_user_turn_message_added", assistant.on_user_message)
    replies = Replies()
    worker = PipelineWorker(Pipeline([user, service, bot]), idle_timeout_secs=None, enable_rtvi=False)
    worker.set_reached_downstream_filter((TTSStartedFrame, TTSAudioRawFrame))
    worker.add_event_handler("on_frame_reached_downstream", replies.on_downstream)
    worker.add_event_handler("on_pipeline_error", lambda _w, f: report["errors"].append(f.error))

    async def send(pcm: bytes) -> None:
        await worker.queue_frame(InputAudioRawFrame(audio=pcm, sample_rate=RATE, num_channels=1))

    mic = Microphone(send)
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    running = asyncio.create_task(runner.run())
    streaming = asyncio.create_task(mic.run())
    try:
        # The greeting the service asks for when its context arrives (the default script).
        await worker.queue_frames([LLMRunFrame()])
        await until("the greeting", lambda: assistant.said, timeout_s=30)
        script_llm(args.llm, **TOOL_SCRIPT)
        mic.say(speech())
        report["transcript"] = (await until("transcript of the turn", lambda: assistant.heard))[0]
        await until("get_weather run by Pipecat", lambda: assistant.runs, timeout_s=30)
        answer = await until(
            "an answer that uses the function's output",
            lambda: next((said for said in assistant.said if "sunny" in said), None),
            timeout_s=30,
        )
        report["answer"] = answer
        report["runs"] = assistant.runs
        await until("the answer's audio", lambda: replies.audio_s and replies.audio_s[-1] >= MIN_AUDIO_S)
    finally:
        await stop(streaming)
        await worker.cancel()
        await running


if __name__ == "__main__":
    run(scenario)
