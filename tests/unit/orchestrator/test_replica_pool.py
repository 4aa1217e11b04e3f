"""The choice among replicas (orchestrator/clients/replicas.py) with a fake prober: room from
reported free slots and local placements, turns on ties, failover and recovery, the errors
when nothing takes a stream, the LLM's fewest-in-flight rule, and the settings' URL lists."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import httpx
import pytest
from pydantic import ValidationError

from kit.protocol import Capacity
from orchestrator.clients.errors import BackendAtCapacity, BackendTimeout, BackendUnavailable
from orchestrator.clients.llm_request import LlmRequest
from orchestrator.clients.replicas import (
    LlmReplicas,
    Probe,
    Replica,
    ReplicaPool,
    poll_forever,
    public_url,
    ready_prober,
)
from orchestrator.settings import OrchestratorSettings


class FakeProber:
    """Answers each replica's probe as the test says (default: ready, no capacity reported)."""

    def __init__(self) -> None:
        self.answers: dict[str, Probe] = {}

    def set(
        self, url: str, down: str | None = None, slots: int | None = None, free: int | None = None
    ) -> None:
        self.answers[url] = Probe(
            down, Capacity(slots, free) if slots is not None and free is not None else None
        )

    async def __call__(self, url: str) -> Probe:
        return self.answers.get(url, Probe(None))


def pool_of(prober: FakeProber, *urls: str, **kwargs: object) -> ReplicaPool:
    return ReplicaPool("STT", urls, prober, **kwargs)  # type: ignore[arg-type]


def urls_of(replicas: list[Replica]) -> list[str]:
    return [r.url for r in replicas]


async def place_n(pool: ReplicaPool, n: int) -> list[str]:
    """Place `n` streams that all succeed; the replica each went to."""

    async def take(replica: Replica) -> str:
        return replica.url

    return [await pool.place(take) for _ in range(n)]


async def test_most_free_slots_wins_and_placements_count_until_the_next_report():
    prober = FakeProber()
    prober.set("ws://a", slots=1, free=1)
    prober.set("ws://b", slots=3, free=3)
    pool = pool_of(prober, "ws://a", "ws://b")
    await pool.poll()
    placed = await place_n(pool, 4)
    assert sorted(placed) == ["ws://a", "ws://b", "ws://b", "ws://b"]
    assert placed[:2] == ["ws://b", "ws://b"]  # b had more room until two were placed there
    # The replicas now report what was placed: nothing is counted twice.
    prober.set("ws://a", slots=1, free=0)
    prober.set("ws://b", slots=3, free=0)
    await pool.poll()
    assert [r.room for r in pool.replicas] == [0, 0]
    prober.set("ws://b", slots=3, free=2)  # two of b's streams ended
    await pool.poll()
    assert await place_n(pool, 2) == ["ws://b", "ws://b"]


async def test_ties_take_turns():
    pool = pool_of(FakeProber(), "ws://a", "ws://b", "ws://c")
    await pool.poll()  # healthy, no capacity reported: every replica has the same room
    assert await place_n(pool, 6) == ["ws://a", "ws://b", "ws://c"] * 2


async def test_a_refused_replica_is_marked_down_at_once_and_used_again_when_ready():
    prober = FakeProber()
    prober.set("ws://a", slots=4, free=4)
    prober.set("ws://b", slots=2, free=2)
    pool = pool_of(prober, "ws://a", "ws://b")
    await pool.poll()
    tried: list[str] = []

    async def a_is_dead(replica: Replica) -> str:
        tried.append(replica.url)
        if replica.url == "ws://a":
            raise BackendUnavailable("STT", "cannot reach ws://a: connection refused")
        return replica.url

    assert await pool.place(a_is_dead) == "ws://b"
    assert tried == ["ws://a", "ws://b"]
    a, b = pool.replicas
    assert not a.healthy and "connection refused" in (a.detail or "")
    assert pool.choose() is b  # a still reports the most free slots, but it is down
    assert pool.down is None  # b is up: the kind is ready
    await pool.poll()  # a's /ready answers 200 again
    assert a.healthy and pool.choose() is a


async def test_a_full_replica_is_skipped_and_every_failure_is_named():
    prober = FakeProber()
    pool = pool_of(prober, "ws://a:1", "ws://b:2")
    await pool.poll()

    async def refused(replica: Replica) -> str:
        if replica.url == "ws://a:1":
            raise BackendAtCapacity("STT", "all streams are in use (no free channels)")
        raise BackendUnavailable("STT", "cannot reach ws://b:2: refused")

    with pytest.raises(BackendUnavailable) as info:
        await pool.place(refused)
    message = str(info.value)
    assert "none of the 2 replicas could take it" in message and "ws://a:1: all streams" in message
    assert "ws://b:2: cannot reach" in message
    a, b = pool.replicas
    assert a.healthy and a.room == 0 and not b.healthy  # a is full, not down

    async def all_full(replica: Replica) -> str:
        raise BackendAtCapacity("STT", "all streams are in use (no free channels)")

    with pytest.raises(BackendAtCapacity):  # every replica full: the session says at capacity
        await pool.place(all_full)


async def test_one_replica_fails_with_its_own_error_and_is_still_tried_when_down():
    prober = FakeProber()
    prober.set("ws://only", down="unreachable (ConnectError)")
    pool = pool_of(prober, "ws://only")
    await pool.poll()
    assert pool.down == "unreachable (ConnectError)"
    error = BackendUnavailable("STT", "cannot reach ws://only: refused")

    async def refused(replica: Replica) -> str:
        raise error

    with pytest.raises(BackendUnavailable) as info:
        await pool.place(refused)
    assert info.value is error  # as with a plain URL: no wrapping
    assert await place_n(pool, 1) == ["ws://only"]  # back before the probe noticed: used at once


async def test_failures_outside_failover_are_the_callers():
    pool = pool_of(FakeProber(), "http://a/v1", "http://b/v1", failover=BackendUnavailable)
    await pool.poll()
    tried: list[str] = []

    async def slow(replica: Replica) -> str:
        tried.append(replica.url)
        raise BackendTimeout("LLM", "no answer within 15 s")

    with pytest.raises(BackendTimeout):
        await pool.place(slow)
    assert len(tried) == 1 and all(r.healthy for r in pool.replicas)


async def test_pool_down_names_every_replica_and_status_hides_credentials():
    prober = FakeProber()
    prober.set("wss://user:secret@a:8443", down="loading model")
    prober.set("ws://b:1", down="unreachable (ConnectTimeout)")
    pool = pool_of(prober, "wss://user:secret@a:8443", "ws://b:1")
    await pool.poll()
    assert pool.down == "wss://a:8443: loading model; ws://b:1: unreachable (ConnectTimeout)"
    assert [s["url"] for s in pool.status()] == ["wss://a:8443", "ws://b:1"]
    assert public_url("http://k:v@[::1]:8000/v1?api_key=x") == "http://[::1]:8000/v1"


def prober_over(handler: httpx.MockTransport) -> tuple[httpx.AsyncClient, object]:
    http = httpx.AsyncClient(transport=handler)
    return http, ready_prober(http)


async def test_ready_prober_reads_capacity_and_reasons():
    answers = {
        "a": httpx.Response(200, json={"status": "ready", "service": "stt", "slots": 4, "free_slots": 3}),
        "b": httpx.Response(200, text="ready\n"),  # a service that reports no capacity
        "c": httpx.Response(503, json={"status": "not ready", "reason": "warming up"}),
        "d": httpx.Response(502, text="bad gateway"),
    }
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return answers[request.url.host]

    http, probe = prober_over(httpx.MockTransport(handler))
    async with http:
        results = {host: await probe(f"ws://{host}:1") for host in answers}  # type: ignore[operator]
    assert seen[0] == "http://a:1/ready"
    assert results["a"] == Probe(None, Capacity(4, 3))
    assert results["b"] == Probe(None, None)
    assert results["c"] == Probe("warming up")
    assert results["d"] == Probe("HTTP 502")


class FakeLlmClient:
    """An LlmClient stand-in: streams words, waits on `gate` after the first, or refuses."""

    def __init__(self, url: str, refuse: bool = False) -> None:
        self.url, self.refuse = url, refuse
        self.is_echo, self.model = False, "m"
        self.gate = asyncio.Event()
        self.started: asyncio.Queue[None] = asyncio.Queue()  # one item per request it got

    async def ready(self) -> str | None:
        return None

    async def stream(self, request: LlmRequest) -> AsyncGenerator[str, None]:
        self.started.put_nowait(None)
        if self.refuse:
            raise BackendUnavailable("LLM", f"cannot reach {self.url}")
        yield "one"
        await self.gate.wait()
        yield " two"

    async def aclose(self) -> None:
        pass


async def test_llm_requests_go_to_the_replica_with_fewest_in_flight_and_skip_a_dead_one():
    a, b, c = FakeLlmClient("http://a/v1"), FakeLlmClient("http://b/v1"), FakeLlmClient("http://c/v1", True)
    llm = LlmReplicas([a, b, c])  # type: ignore[list-item]
    await llm.pool.poll()

    async def reply() -> str:
        return "".join([str(delta) async for delta in llm.stream(LlmRequest([]))])

    first = asyncio.create_task(reply())
    await a.started.get()
    second = asyncio.create_task(reply())  # a is busy: b
    await b.started.get()
    assert [r.in_flight for r in llm.pool.replicas] == [1, 1, 0]
    third = asyncio.create_task(reply())  # c has room but refuses: marked down, then a (turns)
    await c.started.get()
    await a.started.get()
    a.gate.set()
    b.gate.set()
    assert await asyncio.gather(first, second, third) == ["one two"] * 3
    assert not llm.pool.replicas[2].healthy
    assert [r.in_flight for r in llm.pool.replicas] == [0, 0, 0]


def test_settings_url_lists(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SERVICE_API_KEY", "k" * 24)
    for name in ("STT_URL", "STT_URLS", "TTS_URLS", "LLM_URL", "LLM_URLS", "LLM_PORT"):
        monkeypatch.delenv(name, raising=False)
    plain = OrchestratorSettings(_env_file=None, stt_url="ws://n1:3001")  # type: ignore[call-arg]
    assert plain.stt_endpoints == ["ws://n1:3001"] and plain.llm_endpoints == ["http://127.0.0.1:3002/v1"]
    listed = OrchestratorSettings(
        _env_file=None,  # type: ignore[call-arg]
        stt_url="ws://ignored:1",
        stt_urls=" ws://n1:3001/, https://http-node:3001 ,",
        llm_urls="http://n1:8000/v1,http://n2:8000/v1",
    )
    assert listed.stt_endpoints == ["ws://n1:3001", "wss://http-node:3001"]
    assert listed.llm_endpoints == ["http://n1:8000/v1", "http://n2:8000/v1"]
    assert OrchestratorSettings(_env_file=None, llm_url="echo").llm_endpoints == ["echo"]  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="TTS_URLS: 'tcp://n1:3003' is not a URL"):
        OrchestratorSettings(_env_file=None, tts_urls="ws://n0:3003,tcp://n1:3003")  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="LLM_URLS lists no URL"):
        OrchestratorSettings(_env_file=None, llm_urls=" , ")  # type: ignore[call-arg]


async def test_a_poller_that_fails_reports_every_replica_down_with_the_reason():
    async def broken(url: str) -> Probe:
        raise RuntimeError("bug in a probe")

    pool = ReplicaPool("STT", ["ws://a:1", "ws://b:2"], broken)
    await poll_forever([pool], interval_s=0.01)  # returns: it does not spin or stay silent
    assert pool.down is not None and "replica poller failed: RuntimeError: bug in a probe" in pool.down
    assert not any(r.healthy for r in pool.replicas)
