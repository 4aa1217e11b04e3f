"""What the three fuzz modules share: the healthy-stream watcher, the log checker, the metrics
and memory readers, close-code judging, and the Hypothesis strategies for hostile values."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import msgpack
import psutil
import websockets
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from websockets.frames import Close, Opcode

from devkit.processes import ServiceProcess
from tests.raw_client import RawConnection, RawWebSocket, client_frame, http_request, upgrade_request

ROOT = Path(__file__).resolve().parents[2]
# The longest wait for the healthy stream's next progress. On this 2-core machine the longest
# gap measured in a whole fuzz run is 0.48 s (the TTS's random messages). Runs that shared the
# cores with other work measured 1.35 s (browsers a test had left talking) and 4.2 s (another
# test run beside it): such a gap means the machine or a service is in trouble, and the check
# should say so.
MAX_GAP_S = 1.0

# Fixed seeds, bounded counts, no example database, and no shrinking (every finding is
# reported with its exact input instead, which costs no extra round trips).
_FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


def fuzz(max_examples: int) -> settings:
    """Hypothesis settings of a fuzz case: `max_examples` inputs from the fixed seed."""
    return settings(_FUZZ, max_examples=max_examples)


# ---- the healthy stream ------------------------------------------------------------------


@dataclass
class HealthyReport:
    """What the healthy client saw while the fuzz ran."""

    max_gap_s: float
    beats: int
    problems: list[str] = field(default_factory=list)

    def check(self) -> list[str]:
        """Findings, as text (empty when the healthy stream was undisturbed)."""
        found = [f"healthy client: {p}" for p in self.problems]
        if self.beats == 0 or self.max_gap_s > MAX_GAP_S:
            found.append(f"healthy stream stalled: longest gap {self.max_gap_s:.2f} s, {self.beats} beats")
        return found


@contextlib.contextmanager
def healthy(kind: str, url: str, key: str, workdir: Path) -> Iterator[list[HealthyReport]]:
    """Run `tests.fuzz.healthy` beside the block; the measured window is the block itself,
    entered once the stream flows, and held open until the stream has made progress in it (a
    block shorter than one healthy Realtime turn would otherwise check nothing). The report is
    appended to the yielded list on exit."""
    journal = workdir / f"healthy-{kind}-{time.monotonic_ns()}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fuzz.healthy", kind, url, key, str(journal)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
    )
    out: list[HealthyReport] = []
    try:
        deadline = time.monotonic() + 60
        while _count(journal, "beat") < 3:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise AssertionError(f"the healthy {kind} client never got going:\n{_read(journal)}")
            time.sleep(0.1)
        start = time.monotonic()
        yield out
        deadline = time.monotonic() + 60
        while not _beats_since(journal, start) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        end = time.monotonic()
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    out.append(_report(_read(journal), start, end))


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def _beats_since(path: Path, start: float) -> bool:
    return any(
        line.startswith("beat ") and float(line.split(" ", 2)[1]) >= start
        for line in _read(path).splitlines()
    )


def _count(path: Path, kind: str) -> int:
    return sum(1 for line in _read(path).splitlines() if line.startswith(kind + " "))


def _report(text: str, start: float, end: float) -> HealthyReport:
    """Longest time in [start, end] during which progress was expected and none came."""
    gap, beats, problems = 0.0, 0, []
    last: float | None = None  # time of the latest beat (or segment start) while expecting progress
    for line in text.splitlines():
        kind, stamp, *rest = line.split(" ", 2)
        t = float(stamp)
        if kind == "problem" and start <= t <= end + 5:
            problems.append(rest[0] if rest else "")
        if kind in ("beat", "segment") and (kind == "segment" or last is not None):
            if last is not None:
                gap = max(gap, min(t, end) - max(last, start))
            last = t
            beats += kind == "beat" and start <= t <= end
        elif kind in ("idle", "end"):
            if last is not None and t > start:
                gap = max(gap, min(t, end) - max(last, start))
            last = None
    if last is not None:
        gap = max(gap, end - max(last, start))
    return HealthyReport(round(gap, 3), beats, problems)


# ---- what a service leaves behind -------------------------------------------------------


class LogWatch:
    """The service's log from now on, for tracebacks and errors logged with one."""

    MARKS = ("Traceback", "Exception in ASGI application")

    def __init__(self, service: ServiceProcess) -> None:
        self.service = service
        self.offset = service.log.stat().st_size

    def text(self) -> str:
        """What the service has logged since this watch began."""
        with self.service.log.open("rb") as f:
            f.seek(self.offset)
            return f.read().decode(errors="replace")

    def problems(self) -> list[str]:
        text = self.text()
        found = []
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                entry = None
            if not isinstance(entry, dict):
                if any(mark in line for mark in self.MARKS):
                    found.append(line[:300])
                continue
            if entry.get("exc") or entry.get("level") == "CRITICAL" or any(m in line for m in self.MARKS):
                exc = str(entry.get("exc", "")).strip().splitlines()
                found.append(f"{entry.get('level')} {entry.get('msg')!r}: {exc[-1] if exc else ''}"[:400])
        return found


def metric(service: ServiceProcess, name: str) -> float:
    """A Prometheus gauge or counter of the service (0 when it has no samples yet)."""
    text = httpx.get(f"{service.http}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def settle(checks: list[tuple[ServiceProcess, str]], within_s: float = 15.0) -> list[str]:
    """Wait for each gauge to read zero; the ones that do not, as findings."""
    deadline = time.monotonic() + within_s
    while True:
        left = [(s, n, v) for s, n in checks if (v := metric(s, n)) != 0]
        if not left or time.monotonic() > deadline:
            return [
                f"{n} is {v:g} on port {s.port}, {within_s:.0f} s after the clients left" for s, n, v in left
            ]
        time.sleep(0.25)


def alive(service: ServiceProcess) -> list[str]:
    """The process runs and says it is ready."""
    if service.process.poll() is not None:
        return [f"the service on port {service.port} exited with {service.process.returncode}"]
    response = httpx.get(f"{service.http}/ready", timeout=5)
    return [] if response.status_code == 200 else [f"/ready is {response.status_code}: {response.text}"]


def rss(service: ServiceProcess) -> int:
    """Resident memory of the service process, in bytes."""
    return psutil.Process(service.process.pid).memory_info().rss


async def gather_findings(*clients: Awaitable[list[str]]) -> list[str]:
    """Run the clients at once; all their findings."""
    return [f for found in await asyncio.gather(*clients) for f in found]


#: One short-lived client of a churn: (mode, seed) -> findings; `mode` picks how it leaves.
ChurnClient = Callable[[int, int], Awaitable[list[str]]]


async def churn_round(one: ChurnClient, round_no: int, *, clients: int, modes: int, each: int) -> list[str]:
    """`clients` clients at once, each opening and leaving `each` times in turn."""

    async def client(c: int) -> list[str]:
        found = []
        for i in range(each):
            seed = round_no * 1000 + c * 10 + i
            found += await one(seed % modes, seed)
        return found

    return await gather_findings(*(client(c) for c in range(clients)))


def churn(
    services: Sequence[ServiceProcess],
    one: ChurnClient,
    *,
    clients: int,
    modes: int,
    each: int = 6,
    watched: Callable[[], contextlib.AbstractContextManager[list[HealthyReport]]],
    settled: Callable[[], list[str]],
    after: Callable[[list[HealthyReport]], list[str]],
) -> list[str]:
    """A warm-up round, then three rounds of churn beside the healthy client (`watched`).

    Each of `services` (the one churned, and the ones behind it) has its RSS baseline taken
    after the warm-up (allocator, decoders and caches settle in it, once `settled` says the
    slots are back), and must not grow over 10 %; `after` checks what the rounds left.
    """
    rounds = {"clients": clients, "modes": modes, "each": each}
    findings = asyncio.run(churn_round(one, 0, **rounds))
    findings += settled()
    baselines = [rss(service) for service in services]
    with watched() as reports:
        for round_no in range(1, 4):
            findings += asyncio.run(churn_round(one, round_no, **rounds))
    findings += after(reports)
    for service, baseline in zip(services, baselines, strict=True):
        grown = rss(service)
        if grown > baseline * 1.10:
            findings.append(
                f"RSS of the service on port {service.port} grew from {baseline / 1e6:.0f} MB "
                f"to {grown / 1e6:.0f} MB over the churn"
            )
    return findings


def close_finding(exc: websockets.ConnectionClosed, what: str) -> list[str]:
    """An abnormal close (no close frame: 1006) is a finding; a close frame with a code is not."""
    if exc.rcvd is None and exc.sent is not None and exc.sent.code == 1011:
        return [f"{what}: our keepalive ping went unanswered, as the server stopped reading the socket"]
    if exc.rcvd is None:
        return [f"{what}: connection dropped without a close frame (1006)"]
    return []


# ---- hostile values ----------------------------------------------------------------------

TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
HUGE_INTS = st.sampled_from([2**63 - 1, 2**64 - 1, -(2**63), 10**18, -1, 0])
FLOATS = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [math.nan, math.inf, -math.inf, 1e308]
)


def scalars(huge_ints: st.SearchStrategy[int] = HUGE_INTS) -> st.SearchStrategy[object]:
    return st.none() | st.booleans() | st.integers(-(2**31), 2**31) | huge_ints | FLOATS | TEXT


def wild(huge_ints: st.SearchStrategy[int] = HUGE_INTS, keys: st.SearchStrategy[str] = TEXT):
    """Any shape of value: wrong types, huge numbers, NaN, nested lists and maps."""
    return st.recursive(
        scalars(huge_ints),
        lambda inner: st.lists(inner, max_size=6) | st.dictionaries(keys, inner, max_size=5),
        max_leaves=24,
    )


def deep_msgpack(depth: int) -> bytes:
    """An array nested `depth` deep (msgpack's own packer refuses to build one)."""
    return b"\x91" * depth + b"\xc0"


def pack(value: object) -> bytes:
    """msgpack, with any lone surrogate in a string written as the bytes UTF-8 would give it
    (which no UTF-8 decoder accepts)."""
    return msgpack.packb(value, use_bin_type=True, unicode_errors="surrogatepass")


# Text with a lone surrogate: JSON's \u escapes and surrogatepass msgpack can carry one, UTF-8 cannot.
def paths(routes: list[str]) -> st.SearchStrategy[str]:
    """A route of the service, or a random printable path. Never one that starts with `//`:
    a client reads that as `//host:port` (a URL with no path), so it refuses to send it."""
    printable = st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=30)
    return st.sampled_from(routes) | printable.map(lambda p: "/" + p.lstrip("/"))


LONE_SURROGATE_TEXT = st.builds(
    lambda before, surrogate, after: before + surrogate + after,
    TEXT,
    st.characters(categories=["Cs"]),
    TEXT,
)
# Byte sequences no UTF-8 decoder takes: a stray byte, a BOM the wrong way round, latin-1 "é",
# a broken pair, a surrogate, an overlong "/", a truncated sequence, a five-byte form.
NOT_UTF8 = st.sampled_from(
    [b"\xff", b"\xfe\xff", b"caf\xe9", b"\xc3(", b"\xed\xa0\x80", b"\xc0\xaf", b"\xe2\x82",
     b"\xf8\x88\x80\x80\x80"]
)  # fmt: skip
VISIBLE = st.binary(max_size=30).map(lambda b: bytes(33 + c % 94 for c in b))
NOT_UTF8_BYTES = st.builds(lambda before, bad, after: before + bad + after, VISIBLE, NOT_UTF8, VISIBLE)


# ---- what no well-behaved client sends: header and frame bytes --------------------------

HEADER_NAMES = ["X-Note", "User-Agent", "Cookie", "Authorization", "kyutai-api-key", "Origin",
                "Sec-WebSocket-Protocol", "Accept-Language", "X-Forwarded-For"]  # fmt: skip


@st.composite
def raw_requests(draw, paths: Sequence[str], ws_path: str, auth: dict[str, str]) -> bytes:
    """A request head as bytes: a plain request or a WebSocket upgrade, with or without the key,
    whose header values may hold bytes that are not UTF-8; or random bytes ending a head."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=300)) + b"\r\n\r\n"
    upgrade = draw(st.booleans())
    headers: dict[str, str | bytes] = dict(auth) if draw(st.booleans()) else {}
    headers |= draw(st.dictionaries(st.sampled_from(HEADER_NAMES), NOT_UTF8_BYTES | VISIBLE, max_size=3))
    if upgrade:
        return upgrade_request(ws_path, headers)
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD"]))
    body = draw(st.binary(max_size=100) | NOT_UTF8_BYTES)
    return http_request(method, draw(st.sampled_from(paths)), {**headers, "Connection": "close"}, body)


async def raw_request_findings(port: int, request: bytes) -> list[str]:
    """A raw request must be answered below 500 (101 for an upgrade that passes), or closed,
    within 15 s."""
    what = f"request {request[:200]!r}"
    conn = await RawConnection.open(port)
    try:
        await conn.send(request)
        head = await asyncio.wait_for(conn.reader.readuntil(b"\r\n\r\n"), 15)
    except (asyncio.IncompleteReadError, ConnectionError):
        return []  # closed without an answer: nothing in it made a request
    except TimeoutError:
        return [f"{what}: no answer and no close within 15 s"]
    finally:
        conn.close()
    if not head.startswith(b"HTTP/1.1 ") or int(head[9:12]) >= 500:
        return [f"{what}: {head[:200]!r}"]
    return []


@st.composite
def text_frames_not_utf8(draw) -> bytes:
    """A text message that is not UTF-8, whole or in two fragments, maybe followed by a close."""
    payload = draw(NOT_UTF8_BYTES)
    cut = draw(st.integers(0, len(payload)))
    if cut in (0, len(payload)):
        frames = client_frame(Opcode.TEXT, payload)
    else:
        frames = client_frame(Opcode.TEXT, payload[:cut], fin=False) + client_frame(
            Opcode.CONT, payload[cut:]
        )
    if draw(st.booleans()):
        frames += client_frame(Opcode.CLOSE, Close(1000, "").serialize())
    return frames


async def text_frame_findings(port: int, path: str, auth: dict[str, str], frames: bytes) -> list[str]:
    """A text message that is not UTF-8 must end the WebSocket with a close frame: 1007, or the
    answer to the client's own close when one came with it."""
    ws = await RawWebSocket.open(port, path, auth)
    try:
        await ws.send_raw(frames)
        closing = await ws.closing(15)
    finally:
        ws.close()
    what = f"text frames {frames[:100]!r}"
    if closing.close is None or not closing.tcp_closed:
        return [f"{what}: no close frame and close within 15 s"]
    if closing.close.code not in (1007, 1000):
        return [f"{what}: closed with {closing.close.code}"]
    return []


def edge_findings(
    port: int, paths: Sequence[str], ws_path: str, auth: dict[str, str], examples: int
) -> list[str]:
    """Raw requests and text frames that are not UTF-8 against one service, from the fixed seed."""
    findings: list[str] = []

    @fuzz(examples)
    @given(
        st.tuples(st.just("request"), raw_requests(paths, ws_path, auth))
        | st.tuples(st.just("text frames"), text_frames_not_utf8())
    )
    def one(case: tuple[str, bytes]) -> None:
        kind, data = case
        if kind == "request":
            findings.extend(asyncio.run(raw_request_findings(port, data)))
        else:
            findings.extend(asyncio.run(text_frame_findings(port, ws_path, auth, data)))

    one()
    return findings
