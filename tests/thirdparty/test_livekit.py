"""LiveKit's OpenAI realtime plugin, unmodified and with its default voice (`marin`), pointed at
`/v1/realtime`: a spoken turn, a barge-in, its own `interrupt()`, and `generate_reply()`."""

from __future__ import annotations

import pytest

from tests.thirdparty.drivers import heard_speech, heard_the_phrase, run_driver

pytestmark = pytest.mark.lite


def test_livekit_spoken_turn_barge_in_interrupt_and_generate_reply(lite_stack, tmp_path):
    # Every step needs reply audio: OpenAI's voice name must reach a voice the TTS has, and
    # the audio deltas an item announced by response.output_item.added.
    report = run_driver("livekit", lite_stack, tmp_path)
    assert heard_the_phrase(report["transcript"]), report
    # The barge-in cancels the reply; the turn that barged in is heard and answered.
    assert report["interrupted_cancelled"] is True, report
    assert heard_speech(report["next_transcript"]), report
    assert report["next_audio_s"] > 0, report
    # interrupt() (response.cancel) cancels that answer.
    assert report["interrupt_cancelled"] is True, report
    # generate_reply() resolves only when response.created echoes response.metadata.
    assert report["generate_reply_audio_s"] > 0, report
