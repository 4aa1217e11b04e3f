"""The conversation API against the lite stack: function tools in a spoken turn, items a
client creates, retrieves and deletes, a text-only session, an out-of-band response, and
the order of the output audio buffer's events. The scripted LLM decides the tool calls,
whatever the STT heard; every event must be one the `openai` SDK's models accept."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from devkit.realtime_client import RealtimeTestClient, append_event, speech
from tests.orchestrator.test_openai_schema import assert_sdk_accepts

pytestmark = pytest.mark.lite

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
TIME = {
    "type": "function",
    "name": "get_time",
    "description": "The time now.",
    "parameters": {"type": "object"},
}
ARGUMENTS = json.dumps({"city": "Paris"})


@contextlib.asynccontextmanager
async def talking(stack, client: RealtimeTestClient) -> AsyncIterator[None]:
    """Run a test's conversation: a step that times out shows the events so far; the client is
    closed and the scripted LLM set back to its default reply, whatever happened."""
    try:
        yield
    except TimeoutError:
        raise AssertionError(f"events so far: {client.types()}") from None
    finally:
        await client.close()
        stack.script()


async def manual_client(stack, instructions: str, **session: object) -> RealtimeTestClient:
    client = await RealtimeTestClient.connect(stack.orchestrator.ws, stack.token, extensions=False)
    update = {"instructions": instructions, "audio": {"input": {"turn_detection": None}}, **session}
    await client.send({"type": "session.update", "session": update})
    await client.wait_type("session.updated")
    return client


def of_type(client: RealtimeTestClient, kind: str, start: int = 0) -> list[dict]:
    return [e for e in client.events[start:] if e["type"] == kind]


def tts_connects(stack) -> float:
    text = httpx.get(f"{stack.tts.http}/metrics").text
    return float(re.search(r"^py_connect_total (\S+)$", text, re.M).group(1))


async def test_a_spoken_turn_calls_a_tool_and_the_answer_uses_its_result(lite_stack):
    instructions = f"Tools test {uuid.uuid4()}"
    lite_stack.script(
        reply="Let me check.",
        tool_calls=[{"name": "get_weather", "arguments": ARGUMENTS}],
        argument_pieces=4,
        after_tool="In Paris it is {output} today.",
    )
    client = await manual_client(lite_stack, instructions, tools=[WEATHER, TIME], tool_choice="auto")
    async with talking(lite_stack, client):
        updated = of_type(client, "session.updated")[-1]["session"]
        assert [t["name"] for t in updated["tools"]] == ["get_weather", "get_time"]
        assert updated["tool_choice"] == "auto" and updated["tools"][0]["parameters"] == WEATHER["parameters"]
        await client.send(append_event(speech(0.5)))
        await client.send({"type": "input_audio_buffer.commit"})
        await client.send({"type": "response.create"})
        first = await client.wait_type("response.done")
        # The answer: the client returns the function's output, and asks for the next reply.
        start = len(client.events)
        call = of_type(client, "response.function_call_arguments.done")[0]
        output = {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"}
        await client.send({"type": "conversation.item.create", "item": output, "event_id": "out-1"})
        await client.send({"type": "response.create"})
        second = await client.wait_type("response.done", start)

    assert_sdk_accepts(client.events)
    heard = of_type(client, "conversation.item.input_audio_transcription.completed")[0]["transcript"]
    assert heard.split(), "the spoken turn was transcribed into words"
    # The first reply: its words, spoken, then the call, streamed in pieces.
    message, function = first["response"]["output"]
    assert message["type"] == "message" and message["content"][0]["transcript"] == "Let me check."
    assert (function["type"], function["name"], function["status"]) == (
        "function_call",
        "get_weather",
        "completed",
    )
    assert function["arguments"] == ARGUMENTS and function["call_id"] == call["call_id"]
    added = [e["item"]["type"] for e in of_type(client, "response.output_item.added")]
    assert added[:2] == ["message", "function_call"]
    deltas = [e["delta"] for e in of_type(client, "response.function_call_arguments.delta")]
    assert len(deltas) == 4 and "".join(deltas) == ARGUMENTS
    assert client.audio_bytes(first["response"]["id"]), "the words before the call were spoken"
    # The function's output is an item of the conversation, and the answer uses it.
    created = [e for e in of_type(client, "conversation.item.added", start) if e["item"]["type"] != "message"]
    assert created[0]["item"]["output"] == "sunny" and created[0]["previous_item_id"] == function["id"]
    answer = second["response"]["output"][0]["content"][0]["transcript"]
    assert answer == "In Paris it is sunny today."
    # What the LLM was offered and sent.
    requests = lite_stack.llm_requests_for(instructions)
    assert requests[-1][-2:] == [
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": call["call_id"],
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ARGUMENTS},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call["call_id"], "content": "sunny"},
    ]
    offered = lite_stack.llm_tools_for(instructions)[-1]
    assert [t["function"]["name"] for t in offered["tools"]] == ["get_weather", "get_time"]
    assert offered["tool_choice"] == "auto"


async def test_items_a_client_creates_retrieves_and_deletes(lite_stack):
    instructions = f"Items test {uuid.uuid4()}"
    lite_stack.script(reply="Noted.")
    client = await manual_client(lite_stack, instructions)
    async with talking(lite_stack, client):
        text = {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "My name is Ada."}],
        }
        await client.send({"type": "conversation.item.create", "item": {**text, "id": "item_ada"}})
        done = await client.wait_type("conversation.item.done")
        assert done["item"]["content"] == [{"type": "input_text", "text": "My name is Ada."}]
        await client.send({"type": "conversation.item.retrieve", "item_id": "item_ada"})
        assert (await client.wait_type("conversation.item.retrieved"))["item"]["id"] == "item_ada"
        pcm = (speech(0.3) * 32767).astype("<i2").tobytes()
        clip = {"type": "input_audio", "audio": base64.b64encode(pcm).decode()}
        audio_item = {"type": "message", "role": "user", "content": [clip]}
        await client.send(
            {"type": "conversation.item.create", "item": audio_item, "previous_item_id": "root"}
        )
        transcribed = await client.wait_type("conversation.item.input_audio_transcription.completed")
        first = of_type(client, "conversation.item.added")[-1]
        assert first["previous_item_id"] is None and first["item"]["status"] == "in_progress"
        await client.send({"type": "response.create"})
        await client.wait_type("response.done")
        start = len(client.events)
        await client.send({"type": "conversation.item.delete", "item_id": "item_ada", "event_id": "del-1"})
        assert (await client.wait_type("conversation.item.deleted", start))["item_id"] == "item_ada"
        await client.send({"type": "conversation.item.retrieve", "item_id": "item_ada", "event_id": "get-2"})
        await client.send({"type": "conversation.item.create", "item": text, "previous_item_id": "item_x"})
        await client.send({"type": "response.create"})
        await client.wait_type("response.done", start)

    assert_sdk_accepts(client.events)
    assert transcribed["transcript"].split(), "the audio item was transcribed into words"
    errors = [(e["error"]["code"], e["error"]["event_id"]) for e in of_type(client, "error")]
    assert errors == [("item_not_found", "get-2"), ("item_not_found", None)]
    first_request, after_delete = lite_stack.llm_requests_for(instructions)[-2:]
    assert first_request[1] == {"role": "user", "content": f"{transcribed['transcript']} My name is Ada."}
    assert all("Ada" not in m["content"] for m in after_delete[1:])  # out of the context


async def test_a_text_only_session_and_an_out_of_band_response(lite_stack):
    instructions = f"Text test {uuid.uuid4()}"
    lite_stack.script(reply="Paris is the capital of France.")
    client = await manual_client(lite_stack, instructions, output_modalities=["text"])
    async with talking(lite_stack, client):
        connects = tts_connects(lite_stack)
        question = {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "Capital?"}],
        }
        await client.send({"type": "conversation.item.create", "item": question})
        await client.send({"type": "response.create"})
        text_reply = await client.wait_type("response.done")
        assert tts_connects(lite_stack) == connects, "a text-only reply opened a TTS stream"
        start = len(client.events)
        lite_stack.script(reply="positive")
        classify = {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "Classify: I like it"}],
        }
        await client.send(
            {
                "type": "response.create",
                "response": {
                    "conversation": "none",
                    "input": [classify],
                    "metadata": {"purpose": "classification"},
                    "instructions": "Answer with one word.",
                },
            }
        )
        out_of_band = await client.wait_type("response.done", start)
        lite_stack.script(reply="Anything else?")
        start = len(client.events)
        await client.send({"type": "response.create"})
        after = await client.wait_type("response.done", start)

    assert_sdk_accepts(client.events)
    types = client.types()
    assert not [t for t in types if t.startswith(("response.output_audio", "output_audio_buffer"))]
    deltas = "".join(
        e["delta"]
        for e in of_type(client, "response.output_text.delta")
        if e["response_id"] == text_reply["response"]["id"]
    )
    assert deltas == "Paris is the capital of France."
    message = text_reply["response"]["output"][0]
    assert message["content"] == [{"type": "output_text", "text": "Paris is the capital of France."}]
    assert text_reply["response"]["output_modalities"] == ["text"]
    # Out of band: no conversation, its own input and instructions, metadata echoed.
    response = out_of_band["response"]
    assert response["conversation_id"] is None and response["metadata"] == {"purpose": "classification"}
    assert text_reply["response"]["conversation_id"].startswith("conv_")
    assert not [
        e
        for e in client.events[start:]
        if e["type"].startswith("conversation.item")
        and e.get("item", {}).get("id") == response["output"][0]["id"]
    ]
    oob_request = lite_stack.llm_requests_for("Answer with one word.")[-1]
    assert oob_request[1:] == [{"role": "user", "content": "Classify: I like it"}]
    # ... and the next reply's context does not hold it.
    last = lite_stack.llm_requests_for(instructions)[-1]
    assert [m["content"] for m in last[1:]] == ["Capital?", "Paris is the capital of France."]
    assert after["response"]["status"] == "completed"


async def test_output_audio_buffer_stopped_follows_the_audio_and_a_clear_replaces_it(lite_stack):
    """GA order: `stopped` once the audio has played out, after `response.done`; on a barge-in
    after `response.done` (audio still playing), `cleared` and no `stopped`. It used to send
    `stopped` at `response.done`, before the `cleared` of a barge-in."""
    lite_stack.script(reply="Sure. Here is a short answer for you, spoken word by word, to the end.")
    client = await RealtimeTestClient.connect(lite_stack.orchestrator.ws, lite_stack.token, extensions=False)
    async with talking(lite_stack, client):
        await client.send_audio(speech(seconds_of_silence_after=1.5))
        first = await client.wait_type("response.done", wait_s=60)
        rid = first["response"]["id"]
        stopped = await client.wait_type("output_audio_buffer.stopped", wait_s=30)
        # The second reply: the user talks over it once it is generated, as it plays.
        start = len(client.events)
        await client.send_audio(speech(seconds_of_silence_after=1.5))
        second = await client.wait_for(
            lambda e: e["type"] == "response.done" and e["response"]["id"] != rid, start
        )
        done_at = len(client.events)
        await client.send_audio(speech(seconds_of_silence_after=0.2))
        cleared = await client.wait_type("output_audio_buffer.cleared", done_at, wait_s=30)

    assert_sdk_accepts(client.events)
    index = {id(e): i for i, e in enumerate(client.events)}
    assert index[id(stopped)] > index[id(first)] and stopped["response_id"] == rid
    assert cleared["response_id"] == second["response"]["id"]
    stops = [e["response_id"] for e in of_type(client, "output_audio_buffer.stopped")]
    assert cleared["response_id"] not in stops, "a cleared reply's audio never stops on its own"
