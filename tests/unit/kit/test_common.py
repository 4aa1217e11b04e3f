"""Unit tests of kit/, services/common and the engine-independent STT pieces (no model needed)."""

from __future__ import annotations

import logging

import msgpack
import numpy as np
import pytest
from pydantic import SecretStr

from kit.audio import FRAME_SIZE, AudioFormatError, FrameBuffer, frames_for, to_pcm
from kit.auth import key_matches
from kit.logs import RedactSecrets, redact
from kit.protocol import (
    STT_CLIENT_MESSAGES,
    AudioIn,
    MarkerIn,
    MessageParser,
    ProtocolError,
    Step,
    Word,
)
from kit.ratelimit import MessageBudget, RateLimitExceeded
from services.stt.engines.base import pause_probabilities
from services.stt.engines.words import WordDecoder
from services.stt.settings import SttSettings


def test_frame_buffer_hands_out_whole_frames_from_any_chunking():
    rng = np.random.default_rng(0)
    signal = rng.standard_normal(FRAME_SIZE * 5 + 100).astype(np.float32)
    buf = FrameBuffer()
    for chunk in np.split(signal, [7, 1920, 1921, 5000, 9000]):
        buf.push(chunk)
    frames = []
    while (f := buf.pop_frame()) is not None:
        frames.append(f)
    assert len(frames) == 5 and len(buf) == 100
    np.testing.assert_array_equal(np.concatenate(frames), signal[: FRAME_SIZE * 5])
    assert buf.pad_to_frame() == FRAME_SIZE - 100 and buf.full_frames == 1


def test_to_pcm_rules():
    assert to_pcm([0, 0.5, -1]).dtype == np.float32
    for bad in ("x", [["a"]], [True, False], [1.0, float("nan")], None):
        with pytest.raises(AudioFormatError):
            to_pcm(bad)


def test_frames_for_rounds_up_without_float_noise():
    assert frames_for(0.5) == 7 and frames_for(0.08) == 1 and frames_for(2.5) == 32


def test_parser_accepts_both_float_widths_and_names_errors():
    parser = MessageParser(STT_CLIENT_MESSAGES, max_bytes=1000)
    audio = parser.parse(msgpack.packb({"type": "Audio", "pcm": [0.25, 0.5]}, use_single_float=True))
    assert isinstance(audio, AudioIn) and audio.pcm.tolist() == [0.25, 0.5]
    assert isinstance(parser.parse(msgpack.packb({"id": 3, "type": "Marker"})), MarkerIn)
    with pytest.raises(ProtocolError, match="too large"):
        parser.parse(b"\x90" * 1001)
    with pytest.raises(ProtocolError, match="invalid Marker message: id"):
        parser.parse(msgpack.packb({"type": "Marker"}))


def test_outbound_messages_pack_like_rmp_serde():
    assert list(msgpack.unpackb(Word(text="hi", start_time=0.5).pack())) == ["type", "text", "start_time"]
    step = Step(step_idx=1, prs=[0.5, 0.25, 0, 1], buffered_pcm=0).pack()
    assert b"\xca" in step and b"\xcb" not in step


def test_word_decoder_follows_moshi_server():
    pieces = {10: "hel", 11: "lo", 12: "world"}
    dec = WordDecoder(lambda ids: "".join(pieces[i] for i in ids))
    out = []
    for token, time_s in [
        (3, -0.1),
        (10, -0.02),
        (0, 0.0),
        (10, 0.08),
        (11, 0.16),
        (3, 0.24),
        (0, 0.32),
        (12, 0.40),
        (0, 0.48),
    ]:
        out += [m.model_dump() for m in dec.push(token, time_s)]
    assert out == [
        {"type": "Word", "text": "hello", "start_time": 0.0},
        {"type": "EndWord", "stop_time": 0.32},
        {"type": "Word", "text": "world", "start_time": 0.32},
        {"type": "EndWord", "stop_time": 0.48},
    ]


def test_pause_probabilities_rise_with_silence():
    assert pause_probabilities(0.0, 1.0) == [0.0, 0.0, 0.0, 0.0]
    prs = pause_probabilities(0.6, 0.0)
    assert prs[0] == 1.0 and prs[2] == pytest.approx(0.6) and prs == sorted(prs, reverse=True)


def test_key_compare_and_redaction():
    key = SecretStr("s3cret")
    assert key_matches(key, "s3cret") and not key_matches(key, "s3cret!") and not key_matches(key, None)
    assert redact('"GET /api/asr-streaming?auth_id=s3cret&x=1"') == '"GET /api/asr-streaming?auth_id=***&x=1"'
    # uvicorn's DEBUG header dump: the bearer token, the cookie and a key in a subprotocol.
    assert redact("< authorization: Bearer s3cret") == "< authorization: ***"
    assert redact("< cookie: unmute_token=s3cret") == "< cookie: ***"
    offered = "< sec-websocket-protocol: realtime, openai-insecure-api-key.s3cret"
    assert redact(offered) == "< sec-websocket-protocol: realtime, openai-insecure-api-key.***"
    record = logging.LogRecord("x", logging.INFO, "", 0, "path %s", ("/?token=abc",), None)
    RedactSecrets().filter(record)
    assert record.getMessage() == "path /?token=***"


def test_settings_env_prefix_and_shared_keys(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("STT_PORT=3101\nSERVICE_API_KEY=from-dotenv\nTTS_PORT=9\n")
    monkeypatch.setenv("STT_BATCH_SIZE", "3")
    settings = SttSettings()
    assert (settings.port, settings.batch_size, settings.service_api_key.get_secret_value()) == (
        3101,
        3,
        "from-dotenv",
    )
    assert "from-dotenv" not in repr(settings)
    assert SttSettings(port=5).port == 5
    with pytest.raises(ValueError, match="batch_size"):
        SttSettings(batch_size=0)


def test_budget_allows_the_burst_then_refuses_without_waiting():
    budget = MessageBudget(rate=1, burst=5)
    for _ in range(5):
        budget.spend()
    with pytest.raises(RateLimitExceeded, match="more than 1 messages per second"):
        budget.spend()
