"""LiveKit's OpenAI realtime plugin with a `function_tool` against our `/v1/realtime`: a spoken
turn calls the tool; the driver, being the agent (as `AgentSession` does), runs it, puts its
output in the chat context (`update_chat_ctx`) and asks for the answer (`generate_reply`).

    .venv-clients/bin/python -m tests.thirdparty.livekit_tools_driver --url ws://... --token T --out r.json
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from livekit import rtc
from livekit.agents import function_tool, llm
from livekit.plugins.openai.realtime import RealtimeModel

from tests.thirdparty.driver_common import (
    MIN_AUDIO_S,
    RATE,
    Microphone,
    StepTimeout,
    run,
    speech,
    stop,
    until,
)
from tests.thirdparty.livekit_driver import ErrorLog


@function_tool
async def get_weather(city: str) -> str:
    """The weather in a city, today."""
    return "sunny"


@function_tool
async def get_time() -> str:
    """The time now."""
    return "noon"


class Generations:
    """Each generation's function calls, spoken text and audio, as the agent would take them."""

    def __init__(self) -> None:
        self.calls: list[llm.FunctionCall] = []
        self.text: dict[str, str] = {}  # by response id
        self.audio_s: dict[str, float] = {}
        self.transcripts: list[str] = []
        self.ended: set[str] = set()  # generations whose function stream is closed (response.done)
        self._readers: set[asyncio.Task[None]] = set()

    def on_generation(self, event: llm.GenerationCreatedEvent) -> None:
        assert event.response_id is not None
        self.text[event.response_id], self.audio_s[event.response_id] = "", 0.0
        for reader in (self._messages(event.response_id, event), self._functions(event.response_id, event)):
            task = asyncio.create_task(reader)
            self._readers.add(task)
            task.add_done_callback(self._readers.discard)

    async def _messages(self, response_id: str, event: llm.GenerationCreatedEvent) -> None:
        async for message in event.message_stream:
            async for frame in message.audio_stream:
                self.audio_s[response_id] += frame.samples_per_channel / frame.sample_rate
            async for piece in message.text_stream:
                self.text[response_id] += piece

    async def _functions(self, response_id: str, event: llm.GenerationCreatedEvent) -> None:
        async for call in event.function_stream:
            self.calls.append(call)
        self.ended.add(response_id)

    def all_ended(self) -> bool:
        return set(self.text) <= self.ended

    def spoken(self, response_id: str) -> str:
        """The text of a generation's message, once its stream has given it."""
        return self.text[response_id].strip()

    def on_transcript(self, event: llm.InputTranscriptionCompleted) -> None:
        if event.is_final and event.transcript.strip():
            self.transcripts.append(event.transcript.strip())

    async def aclose(self) -> None:
        await asyncio.gather(*self._readers)


async def scenario(args: argparse.Namespace, report: dict[str, Any]) -> None:
    logging.getLogger("livekit").addHandler(ErrorLog(report["errors"]))
    model = RealtimeModel(base_url=f"{args.url}/v1", api_key=args.token)
    session = model.session()
    gens = Generations()
    session.on("generation_created", gens.on_generation)
    session.on("input_audio_transcription_completed", gens.on_transcript)
    session.on("error", lambda e: report["errors"].append(f"{e.error}: {getattr(e.error, 'body', '')}"))

    async def send(pcm: bytes) -> None:
        session.push_audio(rtc.AudioFrame(pcm, RATE, 1, len(pcm) // 2))

    mic = Microphone(send)
    streaming = asyncio.create_task(mic.run())
    try:
        await session.update_tools([get_weather, get_time])
        mic.say(speech())
        call = (await until("the function call", lambda: gens.calls, timeout_s=30))[0]
        report["transcript"] = (await until("the turn's transcript", lambda: gens.transcripts))[0]
        report["call"] = {"name": call.name, "arguments": call.arguments}
        # As AgentSession does, the agent answers once the generation that asked is over
        # (response.done); then it runs the tool, hands the model its output and asks again.
        await until("the call's generation to end", gens.all_ended)
        output = llm.FunctionCallOutput(call_id=call.call_id, name=call.name, output="sunny", is_error=False)
        chat_ctx = session.chat_ctx.copy()
        chat_ctx.insert(output)
        await session.update_chat_ctx(chat_ctx)
        try:
            created = await session.generate_reply()
        except llm.RealtimeError as exc:
            raise StepTimeout(f"generate_reply: {exc}") from None
        answer = created.response_id
        assert answer is not None
        await until("the answer's audio", lambda: gens.audio_s[answer] >= MIN_AUDIO_S, timeout_s=30)
        report["answer"] = await until("the answer's text", lambda: gens.spoken(answer), timeout_s=30)
        report["calls"] = [c.name for c in gens.calls]
    finally:
        await stop(streaming)
        await session.aclose()
        await gens.aclose()
        await model.aclose()


if __name__ == "__main__":
    run(scenario)
