"""Replicas of each backend kind, their health and room, and which one a new stream goes to.

On several nodes the SLURM job runs one STT, one TTS and one vLLM per node and hands the
orchestrator their URLs (STT_URLS, TTS_URLS, LLM_URLS). A `ReplicaPool` per kind keeps, for
each replica, whether its last probe found it ready and how much room it has: the STT and
TTS report their free slots on /ready, and the streams placed here since that report count
against them; an LLM replica's room is the requests this orchestrator has in flight on it
(fewest wins). `poll_forever` probes every replica every `POLL_INTERVAL_S`.

A new stream goes to the healthy replica with the most room (ties in turn). One that cannot
take it (refused, unreachable, no `Ready`, full) is marked so at once and the next is tried,
so a session's STT reconnect and its next reply land on a replica that works; a replica
whose /ready answers 200 again is used again. Unhealthy replicas are tried last, not
skipped: a probe can be a second stale, and with one replica this keeps the behaviour of
a plain URL (each open tries it, and fails with its own error).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

import httpx
from prometheus_client import Gauge

from kit.protocol import Capacity
from orchestrator.clients.errors import BackendAtCapacity, BackendError, BackendUnavailable
from orchestrator.clients.llm import LlmClient
from orchestrator.clients.llm_request import LlmDelta, LlmRequest

logger = logging.getLogger(__name__)

POLL_INTERVAL_S = 1.0
PROBE_TIMEOUT_S = 1.5  # of one /ready; an LLM's /v1/models has LlmClient.ready()'s own 2 s
HEALTHY = Gauge(
    "orchestrator_healthy_replicas", "Replicas whose last probe or stream found them ready", ["kind"]
)

T = TypeVar("T")
NOT_PROBED = "not probed yet"


@dataclass(frozen=True)
class Probe:
    """One look at a replica: None when ready, else why not; its capacity when it reports one."""

    down: str | None
    capacity: Capacity | None = None


Prober = Callable[[str], Awaitable[Probe]]


def public_url(url: str) -> str:
    """`url` without credentials or query (a user:password or an api key must not reach the UI)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # IPv6
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def http_url(url: str) -> str:
    """The http(s):// URL of a ws(s):// one (the same server's HTTP routes)."""
    return "http" + url.removeprefix("ws") if url.startswith("ws") else url


@dataclass(eq=False)
class Replica:
    """One replica as this orchestrator sees it."""

    url: str
    healthy: bool = False
    detail: str | None = NOT_PROBED  # why it is not healthy
    capacity: Capacity | None = None  # as it last reported; None: it reports none (an LLM)
    placed: int = 0  # streams placed here since the probe behind `capacity` was sent
    in_flight: int = 0  # streams being opened here (STT, TTS) or requests running (LLM)

    @property
    def room(self) -> int:
        """Streams it should still take: free slots as last reported, less what was placed or
        is being opened here since; without a report, only the requests in flight here count."""
        free = self.capacity.free_slots - self.placed if self.capacity is not None else 0
        return free - self.in_flight

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Count one stream or request in flight here while the block runs."""
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1

    def status(self) -> dict[str, object]:
        """For /api/status: where, healthy or why not, and its slots (None when not reported)."""
        return {
            "url": public_url(self.url),
            "healthy": self.healthy,
            "detail": self.detail,
            "slots": self.capacity.slots if self.capacity is not None else None,
            "free_slots": self.capacity.free_slots if self.capacity is not None else None,
            "in_flight": self.in_flight,
        }


class ReplicaPool:
    """The replicas of one backend kind ("STT", "TTS", "LLM") and the choice among them."""

    def __init__(
        self,
        service: str,
        urls: Sequence[str],
        prober: Prober,
        *,
        failover: type[BackendError] = BackendError,
    ) -> None:
        """`failover`: the failures after which the next replica is tried (any other is the
        caller's: the replica took the request and failed in it)."""
        if not urls:
            raise ValueError(f"{service}: no replica URL")
        self.service = service
        self.replicas = [Replica(url) for url in urls]
        self._prober = prober
        self._failover = failover
        self._next = 0  # where the next tie is broken: replicas take turns

    def choose(self, failed: Mapping[Replica, BackendError] | None = None) -> Replica:
        """The replica a new stream should go to: healthy before unhealthy, then the most room,
        ties in turn. `failed`: the replicas this placement already tried, and why; when that
        is all of them, raises the error that says why each failed."""
        failed = failed or {}
        n = len(self.replicas)
        left = [i for i in range(n) if self.replicas[i] not in failed]
        if not left:
            raise self._none_took(failed)
        best = min(
            left, key=lambda i: (not self.replicas[i].healthy, -self.replicas[i].room, (i - self._next) % n)
        )
        self._next = (best + 1) % n
        return self.replicas[best]

    async def place(self, attempt: Callable[[Replica], Awaitable[T]]) -> T:
        """`attempt(replica)` on the chosen replica, and on the next one as long as it fails
        with a `failover` error. Returns the first success; when every replica failed, raises
        the error that names each failure (with one replica, its own error)."""
        failed: dict[Replica, BackendError] = {}
        while True:
            replica = self.choose(failed)
            try:
                with replica.busy():
                    result = await attempt(replica)
            except self._failover as exc:
                failed[replica] = exc
                self._refused(replica, exc)
                continue
            replica.placed += 1
            return result

    def _refused(self, replica: Replica, exc: BackendError) -> None:
        if isinstance(exc, BackendAtCapacity):
            # Healthy but full: no room until its next report says otherwise.
            slots = replica.capacity.slots if replica.capacity is not None else 0
            replica.capacity = Capacity(slots, 0)
            replica.placed = 0
            return
        if replica.healthy:
            logger.warning(
                "replica failed; trying another",
                extra={"service": self.service, "replica": public_url(replica.url), "error": exc.detail},
            )
        replica.healthy = False
        replica.detail = exc.detail
        self._count()

    def _none_took(self, failed: Mapping[Replica, BackendError]) -> BackendError:
        errors = list(failed.values())
        if len(errors) == 1:
            return errors[0]  # one replica: its own error, as with a plain URL
        why = "; ".join(f"{public_url(r.url)}: {e.detail}" for r, e in failed.items())
        full = all(isinstance(e, BackendAtCapacity) for e in errors)
        kind = BackendAtCapacity if full else BackendUnavailable
        return kind(self.service, f"none of the {len(errors)} replicas could take it ({why})")

    async def poll(self) -> None:
        """Probe every replica once, all at the same time."""
        await asyncio.gather(*(self._poll_one(replica) for replica in self.replicas))
        self._count()

    async def _poll_one(self, replica: Replica) -> None:
        placed_before = replica.placed
        probe = await self._prober(replica.url)
        healthy = probe.down is None
        if healthy != replica.healthy and replica.detail != NOT_PROBED:
            logger.log(
                logging.INFO if healthy else logging.WARNING,
                "replica back" if healthy else "replica down",
                extra={"service": self.service, "replica": public_url(replica.url), "reason": probe.down},
            )
        replica.healthy = healthy
        replica.detail = probe.down
        if healthy:
            replica.capacity = probe.capacity
            # Streams placed before the probe went out are in its report.
            replica.placed = max(0, replica.placed - placed_before)

    def mark_all_down(self, reason: str) -> None:
        """Report every replica down with `reason` (its health can no longer be known)."""
        for replica in self.replicas:
            replica.healthy, replica.detail = False, reason
        self._count()

    def _count(self) -> None:
        HEALTHY.labels(self.service.lower()).set(sum(r.healthy for r in self.replicas))

    @property
    def down(self) -> str | None:
        """None while a replica is healthy, else why none is."""
        if any(r.healthy for r in self.replicas):
            return None
        if len(self.replicas) == 1:
            return self.replicas[0].detail
        return "; ".join(f"{public_url(r.url)}: {r.detail}" for r in self.replicas)

    def status(self) -> list[dict[str, object]]:
        """Each replica's `Replica.status()`."""
        return [replica.status() for replica in self.replicas]


def ready_prober(http: httpx.AsyncClient) -> Prober:
    """Probes a moshi-server-style service (ws:// or wss:// URL) by its /ready, with `http`."""

    async def probe(url: str) -> Probe:
        try:
            response = await http.get(http_url(url) + "/ready", timeout=PROBE_TIMEOUT_S)
        except httpx.HTTPError as exc:
            return Probe(f"unreachable ({type(exc).__name__})")
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200:
            reason = body.get("reason", response.status_code) if isinstance(body, dict) else None
            return Probe(str(reason or f"HTTP {response.status_code}"))
        return Probe(None, _capacity(body))

    return probe


def _capacity(body: object) -> Capacity | None:
    """The capacity in a /ready answer, if it reports one (an older service does not)."""
    if not isinstance(body, dict):
        return None
    slots, free = body.get("slots"), body.get("free_slots")
    if type(slots) is not int or type(free) is not int or not 0 <= free <= slots:
        return None
    return Capacity(slots, free)


class LlmReplicas:
    """The `Llm` of a session over one or more LLM replicas: each request goes to the healthy
    replica with the fewest requests in flight here; one that cannot be reached before its
    first token is marked down and the request goes to the next."""

    def __init__(self, clients: Sequence[LlmClient]) -> None:
        self.clients = {client.url: client for client in clients}
        # A timeout or an HTTP error means the replica took the request: no second try.
        self.pool = ReplicaPool("LLM", list(self.clients), self._probe, failover=BackendUnavailable)

    @property
    def is_echo(self) -> bool:
        return any(client.is_echo for client in self.clients.values())

    @property
    def model(self) -> str | None:
        """The model asked for (the first replica that knows it)."""
        return next((c.model for c in self.clients.values() if c.model), None)

    async def _probe(self, url: str) -> Probe:
        return Probe(await self.clients[url].ready())

    async def stream(self, request: LlmRequest) -> AsyncIterator[LlmDelta]:
        """The assistant's reply (text and tool-call pieces), from the replica chosen for it."""

        async def start(replica: Replica) -> tuple[Replica, AsyncGenerator[LlmDelta, None], LlmDelta | None]:
            deltas = self.clients[replica.url].stream(request)
            try:
                return replica, deltas, await anext(deltas, None)
            except BaseException:
                await deltas.aclose()
                raise

        replica, deltas, first = await self.pool.place(start)
        try:
            with replica.busy():
                if first is None:
                    return
                yield first
                async for delta in deltas:
                    yield delta
        finally:
            await deltas.aclose()

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.aclose()


async def poll_forever(pools: Sequence[ReplicaPool], interval_s: float = POLL_INTERVAL_S) -> None:
    """Probe every pool's replicas, then again `interval_s` after each round, until cancelled.

    A fault of its own (a probe answers with a reason, it does not raise) must not leave the
    last verdicts standing: every replica is then reported down with the reason, so /ready
    answers 503 and says why, and the poller ends.
    """
    try:
        while True:
            await asyncio.gather(*(pool.poll() for pool in pools))
            await asyncio.sleep(interval_s)
    except Exception as exc:
        logger.exception("the replica poller failed; every replica is reported down")
        for pool in pools:
            pool.mark_all_down(f"replica poller failed: {type(exc).__name__}: {exc}")
