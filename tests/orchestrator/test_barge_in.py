"""Barge-in: speaking over the assistant stops LLM and TTS at once, flushes the client's
playback, and leaves in the history only the words the client played."""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import numpy as np
import pytest

from devkit.realtime_client import RealtimeTestClient, speech
from kit.audio import SAMPLE_RATE

pytestmark = pytest.mark.lite

LONG_REPLY = " ".join(f"Sentence {n} of a long and winding answer, told slowly." for n in range(1, 9))


def open_tts_streams(stack) -> float:
    text = httpx.get(f"{stack.tts.http}/metrics").text
    return float(re.search(r"^py_open_channels (\S+)$", text, re.M).group(1))


def wait_for_request_with_history(stack, assistant_text: str) -> list[dict]:
    """The first LLM request whose history holds this assistant message.

    Matching the text, not just "the latest request that mentions the reply": the
    interrupting speech can end a turn of its own before the client's truncate arrives,
    and that request carries the server's own estimate of what was heard.
    """
    for _ in range(600):
        for messages in stack.llm_requests():
            if {"role": "assistant", "content": assistant_text} in messages:
                return messages
        time.sleep(0.05)
    raise AssertionError(f"no LLM request carried the truncated reply {assistant_text!r}")


async def test_barge_in_cancels_flushes_and_truncates(lite_stack):
    lite_stack.script(reply=LONG_REPLY, token_delay_s=0.1)
    cancelled_before = lite_stack.llm_stats()["cancelled"]
    client = await RealtimeTestClient.connect(lite_stack.orchestrator.ws, lite_stack.token)
    try:
        await client.send_audio(speech(seconds_of_silence_after=1.5))
        created = await client.wait_type("response.created")
        first_audio = await client.wait_type("response.output_audio.delta")
        item_id = first_audio["item_id"]
        start = len(client.events)
        # The user talks over the assistant.
        await client.send_audio(speech(seconds_of_silence_after=0.2))
        await client.wait_type("input_audio_buffer.speech_started", start)
        clear = await client.wait_type("unmute_slurm.output_audio.clear", start)
        done = await client.wait_for(
            lambda e: e["type"] == "response.done" and e["response"]["id"] == created["response"]["id"], start
        )
        assert clear["item_id"] == item_id
        assert done["response"]["status"] == "cancelled"
        # The client played 700 ms before it flushed: it says so.
        await client.send(
            {
                "type": "conversation.item.truncate",
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": 700,
                "event_id": "trunc-1",
            }
        )
        truncated = await client.wait_type("conversation.item.truncated", start)
        assert truncated["item_id"] == item_id and truncated["audio_end_ms"] == 700
        # The interrupting speech becomes the next turn; its LLM request shows the history.
        # Silence past semantic_vad's longest wait (4 s), whatever the end-of-turn model says.
        await client.send_audio(np.zeros(int(4.5 * SAMPLE_RATE), np.float32))
        await client.wait_for(
            lambda e: e["type"] == "response.created" and e["response"]["id"] != created["response"]["id"],
            start,
        )
        # The LLM request of that turn goes out just after response.created: wait for it.
        next_request = await asyncio.to_thread(
            wait_for_request_with_history, lite_stack, truncated["transcript"]
        )
    except TimeoutError:
        raise AssertionError(f"events so far: {client.types()}") from None
    finally:
        await client.close()

    # LLM: the interrupted stream was cancelled (the scripted server saw the hang-up).
    await asyncio.sleep(0.3)
    assert lite_stack.llm_stats()["cancelled"] > cancelled_before
    # TTS: every stream of this session (and of any earlier test's) is closed once it ends.
    for _ in range(50):
        if open_tts_streams(lite_stack) == 0:
            break
        await asyncio.sleep(0.1)
    assert open_tts_streams(lite_stack) == 0
    # History: the next turn's LLM request holds, for this assistant turn, only the words
    # heard in 700 ms: a prefix of the reply.
    assert next_request[-1]["role"] == "user"
    heard = truncated["transcript"].split()
    assert 1 <= len(heard) <= 4 and LONG_REPLY.split()[: len(heard)] == heard, heard
