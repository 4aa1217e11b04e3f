"""Pipecat's `OpenAIRealtimeLLMService`, unmodified, pointed at `/v1/realtime`: a spoken turn,
then a barge-in whose cancelled reply must not end the service's receive task."""

from __future__ import annotations

import pytest

from tests.phrase import heard_the_phrase
from tests.thirdparty.drivers import run_driver

pytestmark = pytest.mark.lite


def test_pipecat_spoken_turn_and_barge_in(lite_stack, tmp_path):
    report = run_driver("pipecat", lite_stack, tmp_path)
    # The spoken turn: transcribed, and answered with audio.
    assert heard_the_phrase(report["transcript"]), report
    # The barge-in: the reply's response.done validates against Pipecat's schema (an item
    # of a cancelled response is "incomplete"; "cancelled" killed its receive task) ...
    assert report["interrupted_item_status"] == "incomplete", report
    # ... and the turn that barged in is heard and answered.
    assert heard_the_phrase(report["next_transcript"]), report
    assert report["next_audio_s"] > 0, report


def test_pipecat_function_calling_runs_a_function_and_answers_with_its_output(lite_stack, tmp_path):
    """One call: Pipecat's service, with its context aggregators, runs the registered function
    when the call's arguments are done, returns the output and asks for the answer."""
    report = run_driver("pipecat_tools", lite_stack, tmp_path, {"reply": "Hello there."})
    assert heard_the_phrase(report["transcript"]), report
    assert report["runs"] == [["get_weather", {"city": "Paris"}]], report
    # Pipecat sends a result as JSON: the string "sunny" arrives quoted.
    assert report["answer"] == 'In Paris it is "sunny" today.', report
