"""Every server event we send is one the `openai` SDK's GA models accept, in OpenAI's order.

Third-party clients parse our events with those models (Pipecat) or index their state by
them (LiveKit: an audio delta for an item never announced by `response.output_item.added`
is a KeyError), so a forbidden value or a missing event breaks them on the spot.
"""

from __future__ import annotations

import typing
import uuid

import pytest
from openai.types.realtime import RealtimeServerEvent
from pydantic import BaseModel

from devkit.realtime_client import RealtimeTestClient, append_event, speech

pytestmark = pytest.mark.lite

EXTENSION = "unmute_slurm."
LONG_REPLY = " ".join(f"Sentence {n} of a long answer that keeps going." for n in range(1, 9))
# OpenAI's GA lifecycle of one audio response.
RESPONSE_LIFECYCLE = [
    "response.created",
    "response.output_item.added",
    "conversation.item.added",
    "response.content_part.added",
    "response.output_audio.done",
    "response.output_audio_transcript.done",
    "response.content_part.done",
    "response.output_item.done",
    "conversation.item.done",
    "response.done",
]


def sdk_models() -> dict[str, type[BaseModel]]:
    """The SDK's model for each server event type (RealtimeServerEvent is a union of them)."""
    union = typing.get_args(RealtimeServerEvent)[0]
    return {typing.get_args(m.model_fields["type"].annotation)[0]: m for m in typing.get_args(union)}


def assert_sdk_accepts(events: list[dict]) -> None:
    models = sdk_models()
    for event in events:
        if event["type"].startswith(EXTENSION):
            continue  # this project's documented extensions
        assert event["type"] in models, f"not an OpenAI server event: {event['type']}"
        models[event["type"]].model_validate(event, strict=False)
        item = event.get("item") or {}
        for entry in [item, *((event.get("response") or {}).get("output") or [])]:
            # The SDK's item models are lenient about extra values; the schema is not.
            assert entry.get("status") in (None, "completed", "incomplete", "in_progress"), event


def of_response(events: list[dict], response_id: str) -> list[str]:
    """The types of the events that belong to one response, in order."""
    out = []
    for e in events:
        rid = e.get("response_id") or (e.get("response") or {}).get("id")
        item = (e.get("item") or {}).get("id")
        if rid == response_id or (item is not None and item == response_item(events, response_id)):
            out.append(e["type"])
    return out


def response_item(events: list[dict], response_id: str) -> str | None:
    added = [
        e for e in events if e["type"] == "response.output_item.added" and e["response_id"] == response_id
    ]
    return added[0]["item"]["id"] if added else None


def assert_lifecycle(events: list[dict], response_id: str) -> None:
    types = of_response(events, response_id)
    core = [t for t in types if t in RESPONSE_LIFECYCLE]
    assert core == RESPONSE_LIFECYCLE, types
    # Deltas only between content_part.added and output_audio.done.
    first = types.index("response.content_part.added")
    last = types.index("response.output_audio.done")
    deltas = [i for i, t in enumerate(types) if t.endswith(".delta")]
    assert all(first < i < last for i in deltas), types


async def test_a_barge_in_conversation_is_valid_for_the_sdk(lite_stack):
    """Fault 5: an interrupted response's item is `incomplete` (never `cancelled`) and the response
    says why; fault 6: items and content parts are announced before their audio."""
    lite_stack.script(reply=LONG_REPLY, token_delay_s=0.1)
    client = await RealtimeTestClient.connect(lite_stack.orchestrator.ws, lite_stack.token)
    try:
        await client.send_audio(speech(seconds_of_silence_after=1.5))
        created = await client.wait_type("response.created")
        first_id = created["response"]["id"]
        await client.wait_type("response.output_audio.delta")
        start = len(client.events)
        await client.send_audio(speech(seconds_of_silence_after=1.5))  # talks over the assistant
        cancelled = await client.wait_for(
            lambda e: e["type"] == "response.done" and e["response"]["id"] == first_id, start
        )
        lite_stack.script(reply="Short answer.")
        second = await client.wait_for(
            lambda e: e["type"] == "response.done" and e["response"]["id"] != first_id, start
        )
    except TimeoutError:
        raise AssertionError(f"events so far: {client.types()}") from None
    finally:
        await client.close()

    assert_sdk_accepts(client.events)
    response = cancelled["response"]
    assert response["status"] == "cancelled"
    assert response["status_details"] == {"type": "cancelled", "reason": "turn_detected", "error": None}
    assert [item["status"] for item in response["output"]] == ["incomplete"]
    assert second["response"]["status"] == "completed", second
    assert second["response"]["output"][0]["status"] == "completed"
    for response_id in (first_id, second["response"]["id"]):
        assert_lifecycle(client.events, response_id)
    # Fault 11: the transcription carries its usage (the SDK requires it).
    completed = [e for e in client.events if e["type"].endswith("input_audio_transcription.completed")]
    assert completed and all(
        e["usage"]["type"] == "duration" and e["usage"]["seconds"] > 0 for e in completed
    )
    # Each user item is added to the conversation after its commit, chained to the one before.
    added = [e for e in client.events if e["type"] == "conversation.item.added"]
    assert [e["previous_item_id"] for e in added[1:]] == [e["item"]["id"] for e in added[:-1]]


async def test_manual_turns_metadata_cancel_and_no_vad_events(lite_stack):
    """Fault 6: response.create's metadata is echoed and its instructions apply; fault 11: a
    cancel with nothing running is answered, and without turn detection no speech_* events."""
    instructions = f"Per-response instructions {uuid.uuid4()}"
    lite_stack.script(reply="Here you are.")
    client = await RealtimeTestClient.connect(lite_stack.orchestrator.ws, lite_stack.token)
    try:
        await client.send(
            {"type": "session.update", "session": {"audio": {"input": {"turn_detection": None}}}}
        )
        await client.wait_type("session.updated")
        await client.send({"type": "response.cancel", "event_id": "cancel-idle"})
        idle = await client.wait_type("error", wait_s=10)
        assert idle["error"]["code"] == "response_cancel_not_active"
        assert idle["error"]["event_id"] == "cancel-idle"

        await client.send(append_event(speech(0.5)))
        await client.send({"type": "input_audio_buffer.commit"})
        metadata = {"client_event_id": "response_create_1"}
        await client.send(
            {
                "type": "response.create",
                "event_id": "response_create_1",
                "response": {"instructions": instructions, "metadata": metadata, "tool_choice": "auto"},
            }
        )
        created = await client.wait_type("response.created")
        assert created["response"]["metadata"] == metadata
        done = await client.wait_type("response.done")
        assert done["response"]["status"] == "completed" and done["response"]["metadata"] == metadata

        # A client cancel: the response says so, its item is incomplete.
        lite_stack.script(reply=LONG_REPLY, token_delay_s=0.2)
        start = len(client.events)
        await client.send({"type": "response.create"})
        running = await client.wait_type("response.output_audio_transcript.delta", start)
        await client.send({"type": "response.cancel", "response_id": running["response_id"]})
        cancelled = await client.wait_type("response.done", start)
    except TimeoutError:
        raise AssertionError(f"events so far: {client.types()}") from None
    finally:
        await client.close()

    assert_sdk_accepts(client.events)
    assert lite_stack.llm_requests_for(instructions), "the response's instructions were not used"
    types = client.types()
    assert (
        "input_audio_buffer.speech_started" not in types and "input_audio_buffer.speech_stopped" not in types
    )
    response = cancelled["response"]
    assert response["status"] == "cancelled" and response["output"][0]["status"] == "incomplete"
    assert response["status_details"] == {"type": "cancelled", "reason": "client_cancelled", "error": None}
    for response_id in (done["response"]["id"], response["id"]):
        assert_lifecycle(client.events, response_id)
