"""Whole spoken turns over /v1/realtime, with the lite engines and with the tiny moshi models."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from devkit.realtime_client import RealtimeTestClient, append_event, speech
from tests.phrase import heard_the_phrase
from tests.stt_client import speechlike

TURN_SEQUENCE = [
    "input_audio_buffer.speech_started",
    "input_audio_buffer.speech_stopped",
    "input_audio_buffer.committed",
    "conversation.item.input_audio_transcription.completed",
    "response.created",
    "response.output_audio_transcript.delta",
    "response.output_audio.delta",
    "unmute_slurm.latency",
    "response.output_audio.done",
    "response.output_audio_transcript.done",
    "response.done",
]


def in_order(types: list[str], wanted: list[str]) -> bool:
    """`wanted` appear in `types` in this order (first occurrences, others may interleave)."""
    positions = [types.index(w) if w in types else -1 for w in wanted]
    return -1 not in positions and positions == sorted(positions)


@pytest.mark.lite
async def test_spoken_turn_with_server_vad(lite_stack):
    lite_stack.script(reply="The weather is lovely. Enjoy your day!")
    client = await RealtimeTestClient.connect(lite_stack.orchestrator.ws, lite_stack.token)
    try:
        created = await client.wait_type("session.created")
        assert created["session"]["audio"]["input"]["turn_detection"]["type"] == "server_vad"
        await client.send_audio(speech(seconds_of_silence_after=1.5))
        done = await client.wait_type("response.done")
    finally:
        await client.close()
    types = client.types()
    assert in_order(types, TURN_SEQUENCE), types
    heard = (await_first(client, "conversation.item.input_audio_transcription.completed"))["transcript"]
    assert heard_the_phrase(heard), heard
    assert done["response"]["status"] == "completed"
    assert (
        done["response"]["output"][0]["content"][0]["transcript"] == "The weather is lovely. Enjoy your day!"
    )
    pcm = np.frombuffer(client.audio_bytes(), "<i2")
    assert pcm.size > 24000 * 1.0 and np.abs(pcm).max() > 1000  # a second or more of real speech
    latency = await_first(client, "unmute_slurm.latency")["stages_ms"]
    assert set(latency) == {
        "transcript",
        "llm_first_token",
        "tts_first_audio",
        "first_audio_sent",
        "voice_to_voice",
        "prepared_early",  # None when the reply was not prepared before the turn was sure
    }
    early = latency.pop("prepared_early")
    assert early is None or early >= 0
    assert all(v is not None and v >= 0 for v in latency.values())
    # The LLM got the system prompt and the user's words.
    messages = lite_stack.llm_requests()[-1]
    assert messages[0]["role"] == "system" and messages[-1] == {"role": "user", "content": heard}


def await_first(client: RealtimeTestClient, kind: str) -> dict:
    return next(e for e in client.events if e["type"] == kind)


@pytest.mark.moshi
async def test_manual_commit_turn_on_tiny_moshi_models(moshi_stack):
    """turn_detection null: the client commits and asks for the response, as OpenAI defines."""
    moshi_stack.script(reply="Hello there, this is the assistant.")
    client = await RealtimeTestClient.connect(moshi_stack.orchestrator.ws, moshi_stack.token)
    try:
        await client.send(
            {
                "type": "session.update",
                "session": {
                    "type": "realtime",
                    "audio": {"input": {"turn_detection": None}},
                    "instructions": "Be brief.",
                },
            }
        )
        updated = await client.wait_type("session.updated")
        assert updated["session"]["audio"]["input"]["turn_detection"] is None
        await client.send(append_event(speechlike(3.0)))
        await client.send({"type": "input_audio_buffer.commit"})
        await client.send({"type": "response.create"})
        done = await client.wait_type("response.done")
    finally:
        await client.close()
    types = client.types()
    assert "input_audio_buffer.speech_started" not in types  # no server VAD
    assert in_order(
        types,
        [
            "input_audio_buffer.committed",
            "response.created",  # at once, as OpenAI does; the reply waits for the transcript
            "conversation.item.input_audio_transcription.completed",
            "response.output_audio.delta",
            "response.done",
        ],
    )
    errors = [e["error"] for e in client.events if e["type"] == "error"]
    assert done["response"]["status"] == "completed", errors
    transcript = await_first(client, "conversation.item.input_audio_transcription.completed")["transcript"]
    assert transcript, f"the tiny model transcribes tones into (meaningless) words; errors: {errors}"
    assert len(client.audio_bytes()) % 2 == 0 and len(client.audio_bytes()) > 0
    assert moshi_stack.llm_requests()[-1][0] == {"role": "system", "content": "Be brief."}


@pytest.mark.lite
async def test_openai_sdk_realtime_client_completes_a_turn(lite_stack):
    from openai import AsyncOpenAI

    lite_stack.script(reply="Sure, I can hear you.")
    port = lite_stack.orchestrator.port
    client = AsyncOpenAI(
        api_key=lite_stack.token,
        base_url=f"http://127.0.0.1:{port}/v1",
        websocket_base_url=f"ws://127.0.0.1:{port}/v1",
    )
    seen: list[str] = []
    audio = bytearray()
    async with client.realtime.connect(model="unmute-slurm") as connection:
        await connection.session.update(
            session={"type": "realtime", "audio": {"input": {"turn_detection": None}}}
        )
        pcm16 = (speech(0.5) * 32767).astype("<i2").tobytes()
        for start in range(0, len(pcm16), 9600):
            await connection.input_audio_buffer.append(
                audio=base64.b64encode(pcm16[start : start + 9600]).decode()
            )
        await connection.input_audio_buffer.commit()
        await connection.response.create()
        async for event in connection:
            seen.append(event.type)
            if event.type == "response.output_audio.delta":
                audio += base64.b64decode(event.delta)
            if event.type == "conversation.item.input_audio_transcription.completed":
                assert heard_the_phrase(event.transcript), event.transcript
            if event.type == "response.done":
                assert event.response.status == "completed"
                break
    assert "conversation.item.input_audio_transcription.completed" in seen
    assert seen.count("response.output_audio.delta") > 1 and len(audio) > 24000
