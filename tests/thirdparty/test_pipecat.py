"""Pipecat's `OpenAIRealtimeLLMService`, unmodified, pointed at `/v1/realtime`: a spoken turn,
then a barge-in whose cancelled reply must not end the service's receive task."""

from __future__ import annotations

import pytest

from tests.thirdparty.drivers import heard_speech, heard_the_phrase, run_driver

pytestmark = pytest.mark.lite


def test_pipecat_spoken_turn_and_barge_in(lite_stack, tmp_path):
    report = run_driver("pipecat", lite_stack, tmp_path)
    # The spoken turn: transcribed, and answered with audio.
    assert heard_the_phrase(report["transcript"]), report
    # The barge-in: the reply's response.done validates against Pipecat's schema (an item
    # of a cancelled response is "incomplete"; "cancelled" killed its receive task) ...
    assert report["interrupted_item_status"] == "incomplete", report
    # ... and the turn that barged in is heard and answered.
    assert heard_speech(report["next_transcript"]), report
    assert report["next_audio_s"] > 0, report
