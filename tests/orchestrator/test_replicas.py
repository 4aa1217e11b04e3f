"""Several STT and TTS replicas behind one orchestrator (STT_URLS, TTS_URLS), as on a
multi-node SLURM job: new streams go where the replicas report the most free slots; a
replica that dies costs its sessions one `error` and their next turn runs on another; a
replica that comes back is used again; /ready fails only when a whole kind is down."""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from devkit.processes import Restartable, ServiceProcess
from devkit.realtime_client import RealtimeTestClient, append_event, speech
from tests.conftest import start_llm, start_orchestrator

pytestmark = pytest.mark.lite

WAIT_S = 30.0  # upper bound on anything a test waits for; none depends on it being short


@dataclass
class Replicated:
    """Two STT and two TTS replicas, the scripted LLM, and the orchestrator over them."""

    stt: list[Restartable]
    tts: list[Restartable]
    llm: ServiceProcess
    orchestrator: ServiceProcess
    token: str

    def script(self, **behaviour: object) -> None:
        httpx.post(f"{self.llm.http}/control", json=behaviour).raise_for_status()


@contextlib.contextmanager
def replicated(api_key: str, factory: pytest.TempPathFactory, stt_slots: list[int], tts_slots: list[int]):
    """Start the replicas with these slot counts, and the orchestrator over them."""
    started: list[Restartable] = []
    try:
        for module, engine, slots in [("services.stt", "whisper", n) for n in stt_slots] + [
            ("services.tts", "piper", n) for n in tts_slots
        ]:
            args = ["--engine", engine, "--batch-size", str(slots)]
            started.append(Restartable((module, args), api_key, factory.mktemp(engine)))
        stt, tts = started[: len(stt_slots)], started[len(stt_slots) :]
        token = secrets.token_urlsafe(16)
        with (
            start_llm(api_key, factory.mktemp("llm")) as llm,
            start_orchestrator(
                stt[0].proc,
                tts[0].proc,
                llm,
                token,
                factory.mktemp("orch"),
                STT_URLS=",".join(s.proc.ws for s in stt),
                TTS_URLS=",".join(s.proc.http for s in tts),  # http:// is taken too
            ) as orch,
        ):
            yield Replicated(stt, tts, llm, orch, token)
    finally:
        for service in started:
            service.close()


@pytest.fixture(scope="module")
def uneven(api_key, tmp_path_factory) -> Iterator[Replicated]:
    """STT and TTS replicas of 1 and 3 slots."""
    with replicated(api_key, tmp_path_factory, [1, 3], [1, 3]) as stack:
        yield stack


@pytest.fixture(scope="module")
def pairs(api_key, tmp_path_factory) -> Iterator[Replicated]:
    """Two STT and two TTS replicas of 2 slots each, for killing and restarting."""
    with replicated(api_key, tmp_path_factory, [2, 2], [2, 2]) as stack:
        yield stack


def ready(service: Restartable) -> dict:
    return httpx.get(f"{service.proc.http}/ready", timeout=5).json()


def used(service: Restartable) -> int:
    """Streams the replica holds now, by its own /ready."""
    report = ready(service)
    return report["slots"] - report["free_slots"]


def tts_connects(service: Restartable) -> float:
    text = httpx.get(f"{service.proc.http}/metrics", timeout=5).text
    return float(re.search(r"^py_connect_total (\S+)$", text, re.M).group(1))


def orchestrator_status(stack: Replicated) -> dict:
    headers = {"Authorization": f"Bearer {stack.token}"}
    return httpx.get(f"{stack.orchestrator.http}/api/status", headers=headers, timeout=5).json()


def orchestrator_ready(stack: Replicated) -> httpx.Response:
    return httpx.get(f"{stack.orchestrator.http}/ready", timeout=5)


def replica_healthy(stack: Replicated, kind: str, service: Restartable) -> bool:
    replicas = orchestrator_status(stack)["backends"][kind]["replicas"]
    return next(r["healthy"] for r in replicas if r["url"].endswith(f":{service.proc.port}"))


async def eventually(condition: Callable[[], object], what: str) -> None:
    """Wait for `condition()` to hold (replicas and the orchestrator move on their own); it
    runs in a thread, so the clients keep reading their events meanwhile."""
    for _ in range(int(WAIT_S / 0.1)):
        if await asyncio.to_thread(condition):
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"not within {WAIT_S:.0f} s: {what}")


async def manual_session(stack: Replicated) -> RealtimeTestClient:
    client = await RealtimeTestClient.connect(stack.orchestrator.ws, stack.token)
    await client.send({"type": "session.update", "session": {"audio": {"input": {"turn_detection": None}}}})
    await client.wait_type("session.updated")
    return client


async def full_turn(client: RealtimeTestClient) -> None:
    """Speak, commit and ask for a reply: the turn is transcribed and the reply is heard."""
    start = len(client.events)
    await client.send(append_event(speech(0.5)))
    await client.send({"type": "input_audio_buffer.commit"})
    await client.send({"type": "response.create"})
    done = await client.wait_type("response.done", start)
    heard = await client.wait_type("conversation.item.input_audio_transcription.completed", start)
    assert done["response"]["status"] == "completed", done
    assert heard["transcript"], "the turn was not transcribed"
    assert client.audio_bytes(done["response"]["id"]), "the reply has no audio"


def errors(client: RealtimeTestClient, start: int = 0) -> list[str]:
    return [e["error"]["code"] for e in client.events[start:] if e["type"] == "error"]


def die(service: Restartable) -> None:
    """The replica's process dies at once (SIGKILL: no close frames, no goodbye)."""
    service.proc.process.kill()
    service.kill()  # reaps it


async def closing(clients: list[RealtimeTestClient]) -> None:
    for client in clients:
        await client.close()


async def all_free(stack: Replicated) -> None:
    await eventually(lambda: all(used(s) == 0 for s in stack.stt + stack.tts), "slots still held")


async def with_sessions(
    stack: Replicated, n: int, body: Callable[[list[RealtimeTestClient]], Awaitable[None]]
) -> None:
    clients = [await manual_session(stack) for _ in range(n)]
    try:
        await body(clients)
    finally:
        await closing(clients)
        await all_free(stack)


async def test_sessions_go_to_the_replica_with_the_most_free_slots(uneven):
    stack = uneven
    small_stt, big_stt = stack.stt
    small_tts, big_tts = stack.tts

    async def body(clients: list[RealtimeTestClient]) -> None:
        # Each session holds an STT stream for its life.
        await eventually(lambda: used(small_stt) + used(big_stt) == 4, "four STT streams")
        assert (used(small_stt), used(big_stt)) == (1, 3)
        # Four replies at once, each holding a TTS stream while the LLM dribbles words.
        stack.script(reply="One two three four five six seven eight nine ten.", token_delay_s=0.5)
        for client in clients:
            await client.send({"type": "response.create"})
        await eventually(lambda: used(small_tts) + used(big_tts) == 4, "four TTS streams")
        assert (used(small_tts), used(big_tts)) == (1, 3)
        assert all(not errors(c) for c in clients), [errors(c) for c in clients]

    await with_sessions(stack, 4, body)
    stack.script(reply="Sure.", token_delay_s=0.0)
    status = orchestrator_status(stack)["backends"]["stt"]
    assert status["ready"] and {(r["slots"], r["healthy"]) for r in status["replicas"]} == {
        (1, True),
        (3, True),
    }


async def test_a_dead_stt_replica_moves_its_session_and_spares_the_others(pairs):
    stack = pairs
    first, second = stack.stt

    async def body(clients: list[RealtimeTestClient]) -> None:
        await eventually(lambda: used(first) + used(second) == 2, "two STT streams")
        # Equal replicas: the second session went to the one with more free slots.
        assert (used(first), used(second)) == (1, 1)
        start = [len(c.events) for c in clients]
        die(first)
        await eventually(lambda: used(second) == 2, "the session's STT reconnected on the survivor")
        hit = [c for c, s in zip(clients, start, strict=True) if "stt_unavailable" in errors(c, s)]
        spared = [c for c, s in zip(clients, start, strict=True) if not errors(c, s)]
        assert len(hit) == 1 and len(spared) == 1, [errors(c) for c in clients]
        await eventually(lambda: not replica_healthy(stack, "stt", first), "the dead replica marked down")
        assert (await asyncio.to_thread(orchestrator_ready, stack)).status_code == 200  # one STT is enough
        await full_turn(hit[0])
        await full_turn(spared[0])
        # The replica comes back on its port: used again, first by a new session (it has room).
        first.restart()
        await eventually(lambda: replica_healthy(stack, "stt", first), "the restarted replica seen")
        newcomer = await manual_session(stack)
        clients.append(newcomer)
        await eventually(lambda: used(first) == 1, "a new session on the restarted replica")
        await full_turn(newcomer)
        assert used(second) == 2 and not errors(newcomer)

    try:
        await with_sessions(stack, 2, body)
    finally:
        if first.proc.process.poll() is not None:
            first.restart()


async def test_a_dead_tts_replica_fails_the_reply_and_the_next_runs_on_another(pairs):
    stack = pairs
    client = await manual_session(stack)
    victim: Restartable | None = None
    try:
        stack.script(reply="One two three four five six seven eight nine ten.", token_delay_s=0.5)
        start = len(client.events)
        await client.send({"type": "response.create"})
        await client.wait_type("response.output_audio.delta", start)
        victim, survivor = stack.tts if used(stack.tts[0]) else stack.tts[::-1]
        connects = tts_connects(survivor)
        die(victim)
        error = await client.wait_for(lambda e: e["type"] == "error", start)
        done = await client.wait_type("response.done", start)
        assert error["error"]["code"] == "tts_unavailable" and done["response"]["status"] == "failed", error
        stack.script(reply="Sure, here it is.", token_delay_s=0.0)
        await full_turn(client)
        assert tts_connects(survivor) > connects  # the next reply was spoken by the other replica
    finally:
        stack.script(reply="Sure.", token_delay_s=0.0)
        await client.close()
        if victim is not None:
            victim.restart()
        await all_free(stack)


async def test_ready_fails_only_when_every_replica_of_a_kind_is_down(pairs):
    stack = pairs
    try:
        die(stack.tts[0])
        await eventually(lambda: not replica_healthy(stack, "tts", stack.tts[0]), "one TTS marked down")
        assert (await asyncio.to_thread(orchestrator_ready, stack)).status_code == 200
        die(stack.tts[1])
        await eventually(lambda: orchestrator_ready(stack).status_code == 503, "no TTS left: not ready")
        reason = (await asyncio.to_thread(orchestrator_ready, stack)).json()["reason"]
        assert reason.startswith("tts: ") and all(f":{s.proc.port}" in reason for s in stack.tts), reason
        stack.tts[1].restart()
        await eventually(lambda: orchestrator_ready(stack).status_code == 200, "a TTS is back: ready")
    finally:
        for service in stack.tts:
            if service.proc.process.poll() is not None:
                service.restart()
