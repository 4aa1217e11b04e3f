"""One integration suite for any running deployment: the containers in CI, a SLURM job, or a
user's own stack. It only talks to the public surfaces (moshi-server's protocol on STT and
TTS, OpenAI Realtime on the orchestrator) and assumes nothing about the engines or the LLM.

    python -m pytest tests/deployment --deployment-env .env [--deployment-ca TLS_DIR/cert.pem]
"""

from __future__ import annotations

import httpx
import pytest
import websockets

from devkit.realtime_client import RealtimeTestClient, append_event, speech
from tests import stt_client, tts_client
from tests.deployment.conftest import Deployment


@pytest.mark.parametrize("service", ["stt", "tts", "orchestrator"])
def test_service_reports_ready(deployment: Deployment, service: str) -> None:
    if service == "orchestrator":
        base, verify = deployment.orchestrator_http, deployment.orchestrator_verify
    else:
        base, verify = deployment.http(getattr(deployment, f"{service}_port")), True
    ready = httpx.get(f"{base}/ready", timeout=10, verify=verify)
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ready" and ready.json()["service"] == service


def test_orchestrator_sees_every_backend_ready(deployment: Deployment) -> None:
    status = httpx.get(
        f"{deployment.orchestrator_http}/api/status",
        headers={"Authorization": f"Bearer {deployment.token}"} if deployment.token else {},
        timeout=10,
        verify=deployment.orchestrator_verify,
    )
    assert status.status_code == 200, status.text
    assert {name: part["ready"] for name, part in status.json()["backends"].items()} == {
        "stt": True,
        "tts": True,
        "llm": True,
    }


@pytest.mark.parametrize("key", [None, "not-the-key"])
@pytest.mark.parametrize("service", ["stt", "tts"])
async def test_model_services_refuse_a_missing_or_wrong_key(
    deployment: Deployment, service: str, key: str | None
) -> None:
    client = stt_client if service == "stt" else tts_client
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with client.connect(deployment.ws(getattr(deployment, f"{service}_port")), key):
            pass
    assert refused.value.response.status_code == 401


@pytest.mark.parametrize("token", [None, "not-the-token"])
async def test_orchestrator_refuses_a_missing_or_wrong_token(deployment: Deployment, token: str | None):
    if deployment.access_token is None:
        pytest.fail("ACCESS_TOKEN is empty: this orchestrator lets anyone who reaches its port talk to it")
    with pytest.raises(websockets.InvalidStatus) as refused:
        await RealtimeTestClient.connect(deployment.orchestrator_ws, token, ssl=deployment.orchestrator_tls)
    assert refused.value.response.status_code == 401


async def test_stt_round_trip(deployment: Deployment) -> None:
    """Kyutai's client sequence: Ready, audio, a Marker; words come back, then the Marker."""
    run = await stt_client.transcribe_stream(
        deployment.ws(deployment.stt_port), deployment.service_api_key.get_secret_value(), speech(1.0)
    )
    assert run.types[0] == "Ready" and run.types[-1] == "Marker", run.types
    assert run.of("Marker") == [{"type": "Marker", "id": 7}]
    assert run.words, f"no Word for a spoken phrase: {run.types}"
    starts = [start for _, start in run.words]
    assert starts == sorted(starts) and starts[0] >= 0


async def test_tts_round_trip(deployment: Deployment) -> None:
    """Words in, then Eos: audio frames and timed words come back and the stream closes cleanly."""
    run = await tts_client.speak(
        deployment.ws(deployment.tts_port),
        deployment.service_api_key.get_secret_value(),
        "Hello, this is the integration suite speaking.",
    )
    assert run.messages[0]["type"] == "Ready", run.messages[:1]
    assert run.close_code == 1000
    assert len(run.pcm) > 0.3 * 24000, "less than 0.3 s of audio for a sentence"
    assert run.words, "no word timestamps"
    starts = [start for _, start, _ in run.words]
    assert starts == sorted(starts)


async def test_realtime_spoken_turn(deployment: Deployment) -> None:
    """A spoken phrase, committed by the client: transcript, reply text and reply audio."""
    client = await RealtimeTestClient.connect(
        deployment.orchestrator_ws, deployment.token, ssl=deployment.orchestrator_tls
    )
    try:
        await client.send(
            {"type": "session.update", "session": {"audio": {"input": {"turn_detection": None}}}}
        )
        await client.wait_type("session.updated")
        await client.send(append_event(speech(0.5)))
        await client.send({"type": "input_audio_buffer.commit"})
        await client.send({"type": "response.create"})
        done = await client.wait_type("response.done", wait_s=120)
    finally:
        await client.close()
    errors = [e["error"] for e in client.events if e["type"] == "error"]
    assert done["response"]["status"] == "completed", errors
    heard = [e for e in client.events if e["type"] == "conversation.item.input_audio_transcription.completed"]
    assert heard and heard[0]["transcript"].strip(), f"the phrase was not transcribed; errors: {errors}"
    assert done["response"]["output"][0]["content"][0]["transcript"].strip()
    audio = client.audio_bytes()
    assert len(audio) % 2 == 0 and len(audio) > 0.3 * 24000 * 2, "less than 0.3 s of reply audio"
