"""LiveKit's OpenAI realtime plugin, unmodified and with its default voice (`marin`), pointed at
`/v1/realtime`: a spoken turn, a barge-in, its own `interrupt()`, and `generate_reply()`."""

from __future__ import annotations

import pytest

from tests.phrase import heard_the_phrase
from tests.thirdparty.drivers import run_driver

pytestmark = pytest.mark.lite


def test_livekit_spoken_turn_barge_in_interrupt_and_generate_reply(lite_stack, tmp_path):
    # Every step needs reply audio: OpenAI's voice name must reach a voice the TTS has, and
    # the audio deltas an item announced by response.output_item.added.
    report = run_driver("livekit", lite_stack, tmp_path)
    assert heard_the_phrase(report["transcript"]), report
    # The barge-in cancels the reply; the turn that barged in is heard and answered.
    assert report["interrupted_cancelled"] is True, report
    assert heard_the_phrase(report["next_transcript"]), report
    assert report["next_audio_s"] > 0, report
    # interrupt() (response.cancel) cancels that answer.
    assert report["interrupt_cancelled"] is True, report
    # generate_reply() resolves only when response.created echoes response.metadata.
    assert report["generate_reply_audio_s"] > 0, report


def test_livekit_function_tool_is_called_and_its_output_answered(lite_stack, tmp_path):
    """One call: the plugin streams it to the agent, which returns the output with
    `update_chat_ctx` and asks for the answer with `generate_reply`."""
    script = {
        "reply": "Let me check.",
        "tool_calls": [{"name": "get_weather", "arguments": '{"city": "Paris"}'}],
        "after_tool": "In Paris it is {output} today.",
    }
    report = run_driver("livekit_tools", lite_stack, tmp_path, script)
    assert heard_the_phrase(report["transcript"]), report
    assert report["call"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}, report
    assert report["calls"] == ["get_weather"], report
    assert report["answer"] == "In Paris it is sunny today.", report
