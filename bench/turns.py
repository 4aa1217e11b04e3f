"""Turn-taking benchmark against any deployment's `/v1/realtime` (local, containers, SLURM job).

A corpus of spoken user turns (bench/turn_corpus.py: espeak-ng at several voices and
rates, over background noise) is played to the server as a microphone would: a
continuous stream of `--chunk-ms` appends at real time, noise between the turns. The
replies are played out at real time too (a reply's audio is "heard" until it has all
been played; `unmute_slurm.output_audio.clear` stops it). Each turn starts once the
previous reply has been heard out and the server has gone quiet, and every
configuration gets a fresh session. Per configuration it reports:

- voice to voice p50 / p95: from the end of the user's last word in the played audio
  to the first audio delta of the reply, measured here; and the server's own figure
  (the `voice_to_voice` stage of `unmute_slurm.latency`);
- false cut-ins: hesitation and list turns where a reply that was started before the
  user's last word had ended was heard (it sent audio);
- dropped replies: replies that were started (`response.created`) and ended without a
  single audio delta, plus the prepared replies the server says it dropped unheard
  (`unmute_slurm.prepared_reply.dropped`): preemptive replies dropped without a sound;
- false barge-ins: replies cut short (`response.done` with status `cancelled`, or their
  playback flushed by `unmute_slurm.output_audio.clear`) after a backchannel, a cough or
  a click was played while they were being heard, out of those so played;
- replies cut by noise: replies cut short while the user had said nothing since them;
- turns left open: turns after which the server still reported the user speaking
  (`speech_started` with no `speech_stopped`) `OPEN_SPEECH_WAIT_S` after the last sound;
- errors: `error` events, lost connections, turns that never settled.

Configurations are `server_vad[:SILENCE_MS]` or `semantic_vad[:EAGERNESS]`, then `/preempt` or
`/no-preempt`, sent as the session's `audio.input.turn_detection` (`type`,
`silence_duration_ms` or `eagerness`, and this project's `preemptive`).
It prints a Markdown table and writes it, the figures and every turn's outcome as JSON,
and a PNG plot of voice to voice per configuration, into `--out`.

    python bench/turns.py                                         # URL and token from .env
    python bench/turns.py --short --configs server_vad --out /tmp/turns
    python bench/turns.py --url ws://127.0.0.1:3004 --token ... --configs server_vad/preempt
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import websockets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.loadtest import orchestrator_parser, percentile  # noqa: E402
from bench.turn_corpus import (  # noqa: E402
    INTERJECTIONS,
    MID_TURN_PAUSES,
    CorpusMaker,
    Pcm,
    Turn,
    background_noise,
)
from devkit.realtime_client import append_event  # noqa: E402
from kit.audio import SAMPLE_RATE  # noqa: E402

EAGERNESS = ("low", "medium", "high", "auto")
PREEMPTION = {"preempt": True, "no-preempt": False}
DETECTIONS = ("server_vad", *(f"semantic_vad:{e}" for e in EAGERNESS))
ALL_CONFIGS = tuple(f"{d}/{p}" for d in DETECTIONS for p in PREEMPTION)

LEAD_IN_S = 1.0  # noise alone before the first turn
INTERJECTION_DELAY_S = 0.5  # into the reply's playback when the backchannel/cough/click starts
SETTLE_S = 1.0  # quiet (no event, nothing playing) that ends a turn
REPLY_WAIT_S = 3.0  # past the end of speech, with the server idle: the turn got no reply
# A server still in the user's turn this long after the last sound was played hears speech in
# the noise; the next turn starts regardless (`speech_left_open`). Longer than semantic_vad's
# longest wait (8 s at low eagerness).
OPEN_SPEECH_WAIT_S = 10.0
TURN_TIMEOUT_S = 60.0  # a turn that has not settled by then is an error
POLL_S = 0.05


@dataclass(frozen=True)
class Config:
    """One turn-detection setting, as the session is told it."""

    name: str
    turn_detection: dict[str, Any]


def parse_config(name: str) -> Config:
    """`server_vad`, `server_vad:800/preempt` (800 ms of silence), `semantic_vad:high/preempt`,
    ... -> the `turn_detection` object."""
    detection, slash, preemption = name.partition("/")
    kind, colon, setting = detection.partition(":")
    valid = (
        kind in ("server_vad", "semantic_vad")
        and (
            not colon
            or (kind == "semantic_vad" and setting in EAGERNESS)
            or (kind == "server_vad" and setting.isdigit() and 0 < int(setting) <= 10_000)
        )
        and (not slash or preemption in PREEMPTION)
    )
    if not valid:
        raise argparse.ArgumentTypeError(
            f"{name!r}: expected server_vad[:SILENCE_MS] or semantic_vad[:EAGERNESS], then "
            f"/preempt or /no-preempt, e.g. {ALL_CONFIGS[3]} or server_vad:800/no-preempt"
        )
    turn_detection: dict[str, Any] = {"type": kind}
    if colon and kind == "server_vad":
        turn_detection["silence_duration_ms"] = int(setting)
    elif colon:
        turn_detection["eagerness"] = setting
    if slash:
        turn_detection["preemptive"] = PREEMPTION[preemption]
    return Config(name, turn_detection)


class Microphone:
    """The user's microphone: a noise bed with the turns mixed in, sent `chunk_s` at a
    time, each chunk once it has been "recorded" (at real time)."""

    def __init__(self, ws, noise: Pcm, chunk_s: float) -> None:
        self._ws, self._noise = ws, noise
        self._chunk = round(chunk_s * SAMPLE_RATE)
        self._sent_at: list[float] = []  # when each chunk went out
        self._playing: list[tuple[int, Pcm]] = []  # (start sample, audio)
        self._progress = asyncio.Event()
        self._stopped = False
        self.position = 0  # samples sent so far

    def play(self, audio: Pcm) -> int:
        """Mix `audio` in from the next chunk on; the stream position where it starts."""
        self._playing.append((self.position, audio))
        return self.position

    async def spoken(self, sample: int) -> float:
        """Wait until the stream up to `sample` has been sent; when that instant was spoken.

        That is when its chunk went out less the part of the chunk after it: a slow send
        is the client's delay, not the server's.
        """
        while self.position < sample:
            if self._stopped:
                raise ConnectionError("the microphone stopped: the connection is gone")
            self._progress.clear()
            await self._progress.wait()
        k = max(sample - 1, 0) // self._chunk
        return self._sent_at[k] - ((k + 1) * self._chunk - sample) / SAMPLE_RATE

    async def run(self) -> None:
        """Stream until cancelled or the connection drops."""
        n, started = self._chunk, time.monotonic()
        try:
            while True:
                start = self.position
                await asyncio.sleep(max(0.0, started + (start + n) / SAMPLE_RATE - time.monotonic()))
                chunk = self._noise.take(np.arange(start, start + n), mode="wrap")
                for at, audio in self._playing:
                    lo, hi = max(start, at), min(start + n, at + audio.size)
                    if lo < hi:
                        chunk[lo - start : hi - start] += audio[lo - at : hi - at]
                self._playing = [(at, a) for at, a in self._playing if at + a.size > start + n]
                await self._ws.send(append_event(chunk))
                self._sent_at.append(time.monotonic())
                self.position = start + n
                self._progress.set()
        finally:
            self._stopped = True
            self._progress.set()


@dataclass
class Reply:
    """One `response.created` and what became of it."""

    created: float
    first_audio: float | None = None
    done: float | None = None
    status: str | None = None
    cleared: float | None = None  # its playback was flushed (barge-in or cancel)
    server_v2v_ms: float | None = None

    def cut_at(self) -> float | None:
        """When it was cut short (cancelled or flushed), if it was."""
        times = [self.cleared, self.done if self.status == "cancelled" else None]
        return min((t for t in times if t is not None), default=None)


class Listener:
    """Reads the server's events; plays the replies' audio out at real time."""

    def __init__(self) -> None:
        self.replies: dict[str, Reply] = {}
        self.dropped_unheard = 0  # prepared replies the server says it dropped (no response.created)
        self.errors: list[str] = []
        self.closed = False
        self.session_updated = False
        self.user_speaking = False  # between the server's speech_started and speech_stopped
        self.playing_until = 0.0
        self.last_event = time.monotonic()
        self._changed = asyncio.Event()

    async def run(self, ws) -> None:
        """Until the connection closes."""
        try:
            async for raw in ws:
                self.on_event(json.loads(raw), time.monotonic())
                self._changed.set()
        finally:
            self.closed = True
            self._changed.set()

    def on_event(self, event: dict[str, Any], now: float) -> None:
        kind = event["type"]
        self.last_event = now
        if kind == "session.updated":
            self.session_updated = True
        elif kind == "input_audio_buffer.speech_started":
            self.user_speaking = True
        elif kind == "input_audio_buffer.speech_stopped":
            self.user_speaking = False
        elif kind == "response.created":
            self.replies[event["response"]["id"]] = Reply(created=now)
        elif kind == "response.output_audio.delta" and (reply := self.replies.get(event["response_id"])):
            if reply.first_audio is None:
                reply.first_audio = now
            seconds = len(base64.b64decode(event["delta"])) / 2 / SAMPLE_RATE
            self.playing_until = max(self.playing_until, now) + seconds
        elif kind == "unmute_slurm.output_audio.clear":
            self.playing_until = now  # the client drops what it had queued
            if reply := self.replies.get(event["response_id"]):
                reply.cleared = now
        elif kind == "unmute_slurm.prepared_reply.dropped":
            self.dropped_unheard += 1
        elif kind == "unmute_slurm.latency" and (reply := self.replies.get(event["response_id"])):
            reply.server_v2v_ms = event["stages_ms"].get("voice_to_voice")
        elif kind == "response.done" and (reply := self.replies.get(event["response"]["id"])):
            reply.done, reply.status = now, event["response"]["status"]
        elif kind == "error":
            self.errors.append(str(event["error"].get("message")))

    def replies_over(self, now: float) -> bool:
        """No reply being made or heard."""
        return all(r.done is not None for r in self.replies.values()) and now >= self.playing_until

    async def until(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Whether `predicate` came true (checked on every event and every POLL_S) in time."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if self.closed:
                raise ConnectionError("the server closed the connection")
            if time.monotonic() >= deadline:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), POLL_S)
        return True


@dataclass
class TurnResult:
    """What happened in one turn."""

    name: str
    kind: str
    v2v_ms: float | None = None
    server_v2v_ms: float | None = None
    cut_in: bool = False  # a reply started mid-turn was heard
    dropped: int = 0  # replies that ended without audio
    interjected_during_reply: bool = False
    barge_in: bool = False  # the reply being heard was cancelled after the interjection
    cut_by_noise: bool = False  # the reply was cut short when the user had said nothing since
    speech_left_open: bool = False  # the server still heard the user OPEN_SPEECH_WAIT_S after the turn
    error: str | None = None


async def run_turn(mic: Microphone, listener: Listener, turn: Turn) -> TurnResult:
    """Play one turn (and its interjection over the reply), wait until all is quiet, score it."""
    result = TurnResult(turn.name, turn.kind)
    before, dropped_before = set(listener.replies), listener.dropped_unheard
    start = mic.play(turn.audio)
    end = await mic.spoken(start + turn.end_of_speech)
    last_sample = start + turn.audio.size

    def replies() -> list[Reply]:
        return [r for key, r in listener.replies.items() if key not in before]

    def answer() -> Reply | None:
        """The first reply started after the user's last word that was heard."""
        return next((r for r in replies() if r.created >= end and r.first_audio is not None), None)

    def settled() -> bool:
        """No reply pending or playing, quiet for SETTLE_S, answered or past waiting, and the
        server done with the user's turn (or stuck in one: see OPEN_SPEECH_WAIT_S)."""
        now = time.monotonic()
        quiet = now - max(listener.last_event, listener.playing_until) >= SETTLE_S
        heard_out = not listener.user_speaking or now >= played_out + OPEN_SPEECH_WAIT_S
        answered = answer() is not None or now >= end + REPLY_WAIT_S
        return listener.replies_over(now) and quiet and heard_out and answered

    played_out = math.inf  # when the last sound of the turn was played
    interjected_at = math.inf  # when the interjection started

    if turn.interjection is not None and await listener.until(
        lambda: answer() is not None or settled(), TURN_TIMEOUT_S
    ):
        heard = answer()
        if heard is not None:
            await asyncio.sleep(INTERJECTION_DELAY_S)
            interjected = mic.play(turn.interjection)
            interjected_at = await mic.spoken(interjected)
            # A reply already cut short (by noise) or heard out is no test of the interjection.
            playing = listener.playing_until > interjected_at
            result.interjected_during_reply = heard.cut_at() is None and playing
            last_sample = interjected + turn.interjection.size
    played_out = await mic.spoken(last_sample)
    if not await listener.until(settled, TURN_TIMEOUT_S):
        result.error = (
            f"{turn.name}: not settled after {TURN_TIMEOUT_S:.0f} s (a turn or a reply never ended)"
        )
    heard = answer()
    if heard is not None and heard.first_audio is not None:
        result.v2v_ms = (heard.first_audio - end) * 1000
        result.server_v2v_ms = heard.server_v2v_ms
        if (cut := heard.cut_at()) is not None:
            result.barge_in = result.interjected_during_reply and cut >= interjected_at
            result.cut_by_noise = cut < interjected_at
    result.speech_left_open = listener.user_speaking
    if turn.kind in MID_TURN_PAUSES:
        result.cut_in = any(r.created < end and r.first_audio is not None for r in replies())
    unheard = sum(r.first_audio is None for r in replies())
    result.dropped = unheard + listener.dropped_unheard - dropped_before
    return result


@dataclass
class ConfigResult:
    """One configuration's turns and errors."""

    config: Config
    turns: list[TurnResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def session_update(config: Config) -> str:
    turn_detection = config.turn_detection
    session = {"type": "realtime", "audio": {"input": {"turn_detection": turn_detection}}}
    return json.dumps({"type": "session.update", "session": session})


async def run_config(args: argparse.Namespace, config: Config, turns: list[Turn], noise: Pcm) -> ConfigResult:
    """A fresh session with this configuration, through every turn."""
    result = ConfigResult(config)
    listener = Listener()
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}

    async def converse(ws) -> None:
        await ws.send(session_update(config))
        if not await listener.until(lambda: listener.session_updated or bool(listener.errors), 10):
            raise TimeoutError("no session.updated within 10 s")
        if not listener.session_updated:
            return  # refused: its error is in listener.errors
        mic = Microphone(ws, noise, args.chunk_ms / 1000)
        sender = asyncio.create_task(mic.run())
        try:
            await asyncio.sleep(LEAD_IN_S)
            for turn in turns:
                outcome = await run_turn(mic, listener, turn)
                result.turns.append(outcome)
                print(f"{config.name:26} {describe(outcome)}", file=sys.stderr)
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    try:
        url = f"{args.url}/v1/realtime?extensions=unmute_slurm"
        async with websockets.connect(url, additional_headers=headers, max_size=None) as ws:
            reader = asyncio.create_task(listener.run(ws))
            try:
                await converse(ws)
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
    except (OSError, TimeoutError, websockets.WebSocketException) as exc:
        result.errors.append(f"{type(exc).__name__}: {exc}")
    result.errors += listener.errors + [t.error for t in result.turns if t.error]
    return result


def describe(turn: TurnResult) -> str:
    """One line of progress."""
    parts = [f"{turn.name:36}", "no reply" if turn.v2v_ms is None else f"v2v {turn.v2v_ms:5.0f} ms"]
    parts += ["CUT-IN"] * turn.cut_in + [f"{turn.dropped} dropped"] * bool(turn.dropped)
    parts += ["REPLY CUT BY NOISE"] * turn.cut_by_noise
    parts += ["server still hears speech"] * turn.speech_left_open
    if turn.kind in INTERJECTIONS:
        parts.append(
            ("BARGE-IN" if turn.barge_in else "reply kept")
            if turn.interjected_during_reply
            else "interjection missed the reply"
        )
    return "  ".join([*parts, turn.error or ""]).rstrip()


def stats(values: list[float]) -> dict[str, float | int | None]:
    return {"n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95)}


def summary(res: ConfigResult) -> dict[str, Any]:
    """One configuration's figures as JSON."""
    turns = res.turns
    mid_turn = [t for t in turns if t.kind in MID_TURN_PAUSES]
    return {
        "turn_detection": res.config.turn_detection,
        "turns": len(turns),
        "answered": sum(t.v2v_ms is not None for t in turns),
        "voice_to_voice_ms": stats([t.v2v_ms for t in turns if t.v2v_ms is not None]),
        "server_voice_to_voice_ms": stats([t.server_v2v_ms for t in turns if t.server_v2v_ms is not None]),
        "false_cut_ins": {"turns": sum(t.cut_in for t in mid_turn), "of": len(mid_turn)},
        "dropped_replies": sum(t.dropped for t in turns),
        "false_barge_ins": {
            kind: {
                "cancelled": sum(t.barge_in for t in turns if t.kind == kind),
                "of": sum(t.interjected_during_reply for t in turns if t.kind == kind),
            }
            for kind in INTERJECTIONS
        },
        "replies_cut_by_noise": sum(t.cut_by_noise for t in turns),
        "speech_left_open": sum(t.speech_left_open for t in turns),
        "errors": res.errors,
        "per_turn": [asdict(t) for t in turns],
    }


def table(data: dict[str, dict[str, Any]]) -> str:
    """The Markdown table of every configuration's summary."""
    lines = [
        "| configuration | answered | voice to voice p50 / p95 (ms) | server v2v p50 / p95 (ms) "
        "| false cut-ins | dropped replies | false barge-ins: backchannel / cough / click "
        "| replies cut by noise | turns left open | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def pair(s: dict[str, Any]) -> str:
        return " / ".join("-" if s[q] is None else f"{s[q]:.0f}" for q in ("p50", "p95"))

    for name, s in data.items():
        cut = s["false_cut_ins"]
        barge = " / ".join(f"{b['cancelled']}/{b['of']}" for b in s["false_barge_ins"].values())
        lines.append(
            f"| {name} | {s['answered']}/{s['turns']} | {pair(s['voice_to_voice_ms'])} "
            f"| {pair(s['server_voice_to_voice_ms'])} | {cut['turns']}/{cut['of']} "
            f"| {s['dropped_replies']} | {barge} | {s['replies_cut_by_noise']} | {s['speech_left_open']} "
            f"| {len(s['errors'])} |"
        )
    return "\n".join(lines)


def plot(data: dict[str, dict[str, Any]], path: Path) -> None:
    """Voice to voice per configuration: every turn as a dot, p50 and p95 as bars, the server's
    own p50 as a cross."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(data)
    fig, ax = plt.subplots(figsize=(8, 1.4 + 0.45 * len(names)))
    jitter = np.random.default_rng(0)
    for row, name in enumerate(names):
        summary = data[name]
        samples = [t["v2v_ms"] for t in summary["per_turn"] if t["v2v_ms"] is not None]
        ax.scatter(samples, row + jitter.uniform(-0.15, 0.15, len(samples)), s=10, alpha=0.5, color="C0")
        for q, color in (("p50", "C1"), ("p95", "C3")):
            if (value := summary["voice_to_voice_ms"][q]) is not None:
                ax.plot([value, value], [row - 0.3, row + 0.3], color=color, lw=2, label=q)
        if (server := summary["server_voice_to_voice_ms"]["p50"]) is not None:
            ax.plot(server, row, "kx", label="server's own p50")
    ax.set_yticks(range(len(names)), names)
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.set_xlabel("voice to voice, ms (end of the user's speech → first reply audio)")
    ax.set_title("Turn taking: voice to voice per configuration")
    handles, labels = ax.get_legend_handles_labels()
    once = dict(zip(labels, handles, strict=True))  # every row labels its marks: one entry each
    ax.legend(once.values(), once.keys(), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


async def main_async(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    turns = CorpusMaker(short=args.short, seed=args.seed).turns()
    longest = max(t.audio.size for t in turns) / SAMPLE_RATE
    noise = background_noise(max(10.0, longest), args.snr_db, np.random.default_rng(args.seed + 1))
    kinds = {kind: sum(t.kind == kind for t in turns) for kind in dict.fromkeys(t.kind for t in turns)}
    print(f"{len(turns)} turns {kinds}, SNR {args.snr_db:g} dB, {args.chunk_ms} ms appends", file=sys.stderr)
    data = {}
    for config in args.configs:
        res = await run_config(args, config, turns, noise)
        data[config.name] = summary(res)
    return data


def main() -> None:
    parser = orchestrator_parser(__doc__)
    parser.add_argument(
        "--configs",
        type=parse_config,
        nargs="+",
        default=[parse_config(c) for c in ALL_CONFIGS],
        help=f"turn detection settings, each run on a fresh session (default: {' '.join(ALL_CONFIGS)})",
    )
    parser.add_argument(
        "--short", action="store_true", help="the small CI corpus: a few turns per kind, one voice"
    )
    parser.add_argument(
        "--snr-db", type=float, default=30.0, help="speech to background noise ratio (30 dB: a quiet room)"
    )
    parser.add_argument("--chunk-ms", type=int, default=40, choices=range(20, 101), metavar="20..100")
    parser.add_argument("--seed", type=int, default=0, help="noise, pauses and coughs are drawn from it")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    load = os.getloadavg()
    data = asyncio.run(main_async(args))
    text = table(data)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "turns.md").write_text(text + "\n")
    meta = {
        "url": args.url,
        "short": args.short,
        "snr_db": args.snr_db,
        "chunk_ms": args.chunk_ms,
        "seed": args.seed,
        "load_average_before": load,
        "load_average_after": os.getloadavg(),
    }
    (args.out / "turns.json").write_text(json.dumps({"run": meta, "configs": data}, indent=1) + "\n")
    plot(data, args.out / "turns.png")


if __name__ == "__main__":
    main()
