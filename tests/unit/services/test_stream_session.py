"""The stream-session skeleton both model services share (services/common/stream_session.py),
through the STT and TTS apps on scripted engines: the paths no real client takes on purpose."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import msgpack
import numpy as np
from starlette.testclient import TestClient

from services.stt.app import build_app
from services.stt.settings import SttSettings
from services.tts.app import build_app as build_tts_app
from services.tts.engines.base import SlotInput, SlotOutput, StepResult, TtsEngine
from services.tts.settings import TtsSettings
from tests.unit.services.test_stt_faults import ScriptedEngine

KEY = "skeleton-test-key"


def _client(**overrides: object) -> TestClient:
    settings = SttSettings(_env_file=None, service_api_key=KEY, batch_size=1, **overrides)
    return TestClient(build_app(settings, engine_factory=lambda _: ScriptedEngine(batch_size=1)))


def _wait_ready(client: TestClient, free_slots: int) -> None:
    """Until /ready says the model is loaded and `free_slots` slots are free."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        answer = client.get("/ready")
        if answer.status_code == 200 and answer.json().get("free_slots") == free_slots:
            return
        time.sleep(0.02)
    raise AssertionError(f"/ready never said {free_slots} free slot(s): {answer.text}")


def test_an_idle_stream_gets_an_error_and_a_close_and_its_slot_back():
    with _client(idle_timeout_s=0.3) as client:
        _wait_ready(client, free_slots=1)
        with client.websocket_connect("/api/asr-streaming", headers={"kyutai-api-key": KEY}) as ws:
            assert msgpack.unpackb(ws.receive_bytes()) == {"type": "Ready"}
            error = msgpack.unpackb(ws.receive_bytes())
            assert error["type"] == "Error" and error["message"].startswith("no message for"), error
            assert ws.receive() == {"type": "websocket.close", "code": 1000, "reason": ""}
        _wait_ready(client, free_slots=1)
        metrics = client.get("/metrics").text
        assert 'stt_protocol_errors_total{reason="idle"}' in metrics


def test_a_full_service_refuses_with_no_free_channels_and_serves_the_next_stream():
    with _client() as client:
        _wait_ready(client, free_slots=1)
        headers = {"kyutai-api-key": KEY}
        with client.websocket_connect("/api/asr-streaming", headers=headers) as first:
            assert msgpack.unpackb(first.receive_bytes()) == {"type": "Ready"}
            with client.websocket_connect("/api/asr-streaming", headers=headers) as second:
                refusal = msgpack.unpackb(second.receive_bytes())
                assert refusal == {"type": "Error", "message": "no free channels"}
                assert second.receive()["type"] == "websocket.close"
        _wait_ready(client, free_slots=1)  # the first stream's client left: its slot is back
        with client.websocket_connect("/api/asr-streaming", headers=headers) as third:
            assert msgpack.unpackb(third.receive_bytes()) == {"type": "Ready"}


class HeldTtsEngine(TtsEngine):
    """A stand-in for Piper with one slot: a frame of audio for each batch of words. While the
    test holds `running` clear, every step waits, as a step of a busy engine does."""

    name = "piper"  # whose voice aliases the app looks up
    batch_size = 1
    default_voice = "en_US-joe-medium"

    def __init__(self) -> None:
        self.running = threading.Event()
        self.running.set()

    def voices(self) -> list[str]:
        return [self.default_voice]

    def warmup(self) -> None:
        """Nothing to warm (the base class's warm-up waits for a stream to finish, which this
        engine's never do)."""

    def step(self, inputs: Sequence[SlotInput]) -> StepResult:
        if not self.running.wait(timeout=30):
            raise RuntimeError("the test held the engine for 30 s")
        spoken = {item.slot: SlotOutput(frames=[np.zeros(1920, np.float32)]) for item in inputs if item.words}
        return StepResult(spoken, progressed=False)


def test_a_stream_closed_mid_speech_is_closed_only_once_its_slot_is_free_again():
    """A client that sees the close and opens its next stream at once must get a slot, even
    while the engine is busy: the close waits for the step that stops the old stream."""
    engine = HeldTtsEngine()
    settings = TtsSettings(_env_file=None, service_api_key=KEY, batch_size=1, idle_timeout_s=0.3)
    headers = {"kyutai-api-key": KEY}
    with TestClient(build_tts_app(settings, engine_factory=lambda _: engine)) as client:
        _wait_ready(client, free_slots=1)
        with client.websocket_connect("/api/tts_streaming", headers=headers) as ws:
            assert msgpack.unpackb(ws.receive_bytes()) == {"type": "Ready"}
            ws.send_bytes(msgpack.packb({"type": "Text", "text": "hello"}))
            assert msgpack.unpackb(ws.receive_bytes())["type"] == "Audio"
            engine.running.clear()  # busy: the step that would stop this stream waits
            resume = threading.Timer(0.5, engine.running.set)
            resume.start()
            try:
                # Silent past the idle timeout: an Error, then the close once the slot is free.
                error = msgpack.unpackb(ws.receive_bytes())
                assert error["type"] == "Error" and error["message"].startswith("no message for"), error
                assert ws.receive() == {"type": "websocket.close", "code": 1000, "reason": ""}
                assert client.get("/ready").json()["free_slots"] == 1
            finally:
                resume.cancel()
                engine.running.set()
        with client.websocket_connect("/api/tts_streaming", headers=headers) as ws:
            assert msgpack.unpackb(ws.receive_bytes()) == {"type": "Ready"}
