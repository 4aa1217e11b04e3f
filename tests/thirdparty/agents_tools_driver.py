"""An `openai-agents` `RealtimeAgent` with two function tools against our `/v1/realtime`, run by
the SDK's own `RealtimeRunner` / `RealtimeSession` (which sends the tools, runs them, returns
their output and asks for the next reply): a spoken turn that calls one tool and is answered
with its result, a typed message (`send_message()`), and a barge-in that lands while a tool
call's arguments are still streaming.

The scripted LLM decides when a tool is called (devkit/llm_server.py); the driver changes its
script between steps through `--llm`.

    .venv-clients/bin/python -m tests.thirdparty.agents_tools_driver --url ws://... --token T \\
        --llm http://... --out r.json
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from agents import function_tool
from agents.realtime import RealtimeAgent, RealtimePlaybackTracker, RealtimeRunner, RealtimeSessionEvent
from agents.realtime.model_events import RealtimeModelRawServerEvent

from tests.thirdparty.agents_driver import RecordingModel, SdkLog, Speaker, Upsampler, find
from tests.thirdparty.driver_common import MIN_AUDIO_S, Microphone, run, script_llm, speech, stop, until

WEATHER_ARGUMENTS = '{"city": "Paris"}'
# A call whose arguments stream for ~6 s: the user talks over it.
SLOW_ARGUMENTS = '{"city": "' + "Llanfairpwllgwyngyll, " * 12 + 'Wales"}'
ANSWER = "In Paris it is {output} today."


class Runs:
    """What the agent's tools were called with (the SDK runs them)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []


RUNS = Runs()


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city, today."""
    RUNS.calls.append(("get_weather", city))
    return "sunny"


@function_tool
def get_time() -> str:
    """The time now."""
    RUNS.calls.append(("get_time", ""))
    return "noon"


class Events:
    """The session's events: every server event as sent, reply audio (to the speaker), errors."""

    def __init__(self, speaker: Speaker, errors: list[str]) -> None:
        self.speaker, self.errors = speaker, errors
        self.server: list[dict[str, Any]] = []  # audio deltas left out
        self.tool_ends: list[tuple[str, str]] = []

    async def read(self, session: Any) -> None:
        event: RealtimeSessionEvent
        async for event in session:
            if event.type == "raw_model_event" and isinstance(event.data, RealtimeModelRawServerEvent):
                if event.data.data.get("type") != "response.output_audio.delta":
                    self.server.append(event.data.data)
            elif event.type == "audio":
                self.speaker.on_audio(event.audio)
            elif event.type == "audio_interrupted":
                self.speaker.on_interrupted()
            elif event.type == "tool_end":
                self.tool_ends.append((event.tool.name, str(event.output)))
            elif event.type == "error":
                self.errors.append(f"session error: {event.error}")

    def done(self, after: int = 0) -> list[dict[str, Any]]:
        """The `response` of each response.done from the `after`-th server event on."""
        return [e["response"] for e in self.server[after:] if e["type"] == "response.done"]

    def transcripts(self) -> list[str]:
        kind = "conversation.item.input_audio_transcription.completed"
        return [e["transcript"] for e in self.server if e["type"] == kind and e["transcript"].strip()]


def spoken(response: dict[str, Any]) -> str:
    """The transcript of a response's message (empty if it had none)."""
    for item in response.get("output") or []:
        if item["type"] == "message" and item["content"]:
            return item["content"][0].get("transcript") or ""
    return ""


async def scenario(args: argparse.Namespace, report: dict[str, Any]) -> None:
    logging.getLogger("openai.agents").addHandler(SdkLog(report["errors"]))
    tracker = RealtimePlaybackTracker()
    speaker = Speaker(tracker)
    events = Events(speaker, report["errors"])
    agent = RealtimeAgent(name="Assistant", instructions="You answer briefly.", tools=[get_weather, get_time])
    model = RecordingModel()
    runner = RealtimeRunner(agent, model=model)
    config = {"url": f"{args.url}/v1/realtime", "api_key": args.token, "playback_tracker": tracker}
    session = await runner.run(model_config=config)  # type: ignore[arg-type]
    upsample = Upsampler()
    async with session:
        reading = asyncio.create_task(events.read(session))
        mic = Microphone(lambda pcm: session.send_audio(upsample(pcm)))
        streaming = asyncio.create_task(mic.run())
        playing = asyncio.create_task(speaker.run())
        try:
            # A spoken turn: the model calls get_weather; the SDK runs it, returns its output,
            # and asks for the answer, which uses it.
            mic.say(speech())
            await until("get_weather run by the SDK", lambda: events.tool_ends, timeout_s=30)
            answer = await until(
                "an answer that uses the tool's output",
                lambda: next((r for r in events.done() if "sunny" in spoken(r)), None),
                timeout_s=30,
            )
            report["transcript"] = events.transcripts()[0]
            report["answer"] = spoken(answer)
            await until("the answer played", lambda: speaker.played_s.get(answer["id"], 0.0) >= MIN_AUDIO_S)
            # A typed message.
            script_llm(args.llm, reply="Message received, thank you.")
            start = len(events.server)
            await session.send_message("What time is it?")
            typed = await until("send_message's reply", lambda: events.done(start), timeout_s=30)
            report["message_reply"] = spoken(typed[0])
            report["message_sent"] = bool(find(model.sent, "conversation.item.create"))
            # A barge-in while a call's arguments stream.
            slow_call = {"name": "get_weather", "arguments": SLOW_ARGUMENTS}
            script_llm(args.llm, reply="", tool_calls=[slow_call], argument_pieces=40, token_delay_s=0.15)
            start = len(events.server)
            mic.say(speech())
            await until(
                "the slow call's arguments streaming",
                lambda: find(events.server[start:], "response.function_call_arguments.delta"),
                timeout_s=30,
            )
            script_llm(args.llm, reply="Okay, go on.")
            mic.say(speech())
            cut = await until("the cut reply's response.done", lambda: events.done(start), timeout_s=30)
            report["barge_in"] = {
                "status": cut[0]["status"],
                "reason": (cut[0].get("status_details") or {}).get("reason"),
                "outputs": [(item["type"], item["status"]) for item in cut[0]["output"]],
            }
            after = await until(
                "the reply to the turn that barged in", lambda: events.done(start)[1:], timeout_s=30
            )
            report["after_barge_in"] = spoken(after[0])
            report["tools_run"] = RUNS.calls
        finally:
            await stop(streaming)
            await stop(playing)
            await stop(reading)


if __name__ == "__main__":
    run(scenario)
