"""The `openai-agents` SDK's Realtime WebSocket model, unmodified, pointed at `/v1/realtime`: a
spoken turn, a barge-in, and an interrupt that cancels a response by id. The SDK validates every
server event against the GA event models; one that fails is an error in the report."""

from __future__ import annotations

import pytest

from tests.phrase import heard_the_phrase
from tests.thirdparty.drivers import run_driver

pytestmark = pytest.mark.lite


def test_openai_agents_spoken_turn_barge_in_and_interrupt(lite_stack, tmp_path):
    # run_driver fails on any error: a server event the SDK could not validate, or an
    # `error` event (for its truncates and its cancel among them).
    report = run_driver("agents", lite_stack, tmp_path)
    # The spoken turn: transcribed, and answered with audio and its transcript.
    assert heard_the_phrase(report["transcript"]), report
    assert report["reply_text"].strip(), report
    # The barge-in: the SDK truncates the reply where its playback stood, and the server,
    # which interrupts responses itself, cancels it.
    barge_in = report["barge_in"]
    assert barge_in["truncated_audio_end_ms"] == barge_in["truncate_audio_end_ms"], report
    assert barge_in["status"] == "cancelled", report
    assert heard_the_phrase(report["next_transcript"]), report
    # The interrupt: response.cancel names the playing reply, which ends cancelled and
    # truncated where it was heard.
    assert report["cancel_response_id_matches"] is True, report
    interrupt = report["interrupt"]
    assert interrupt["truncated_audio_end_ms"] == interrupt["truncate_audio_end_ms"], report
    assert interrupt["status"] == "cancelled", report


TOOLS_SCRIPT = {
    "reply": "Let me check.",
    "tool_calls": [{"name": "get_weather", "arguments": '{"city": "Paris"}'}],
    "after_tool": "In Paris it is {output} today.",
}


def test_openai_agents_realtime_agent_calls_a_tool_answers_a_message_and_is_barged_in_on(
    lite_stack, tmp_path
):
    """A `RealtimeAgent` with two function tools, run by the SDK's `RealtimeRunner`."""
    report = run_driver("agents_tools", lite_stack, tmp_path, TOOLS_SCRIPT)
    # A spoken turn calls one tool, which the SDK runs; the answer that follows uses its result.
    assert heard_the_phrase(report["transcript"]), report
    assert report["tools_run"][0] == ["get_weather", "Paris"], report
    assert report["answer"] == "In Paris it is sunny today.", report
    # send_message() is answered.
    assert report["message_sent"] and report["message_reply"] == "Message received, thank you.", report
    # A barge-in during a call's arguments: the reply is cancelled, the half call is never run.
    barge_in = report["barge_in"]
    assert (barge_in["status"], barge_in["reason"]) == ("cancelled", "turn_detected"), report
    assert barge_in["outputs"] == [["function_call", "incomplete"]], report
    assert report["tools_run"] == [["get_weather", "Paris"]], report
    assert report["after_barge_in"] == "Okay, go on.", report
    # ... and no LLM request carries it.
    for messages in lite_stack.llm_requests_for("You answer briefly."):
        calls = [c for m in messages for c in m.get("tool_calls", [])]
        assert all("Llanfair" not in c["function"]["arguments"] for c in calls), messages
