"""Load and latency benchmark against any running deployment (local, containers, SLURM job).

N simulated Realtime clients each stream a spoken phrase (the espeak-ng fixture) at real
time, then silence, and let the server's turn detection end the turn; replies are
consumed at real-time pace (a client "plays" what it receives). Per turn it records:

- STT first word: first speech sample sent -> first transcription delta;
- end of speech -> final transcript (`transcription.completed`);
- voice to voice: end of speech sent -> first audio delta received;
- every stage the orchestrator measures itself (`unmute_slurm.latency`, see
  orchestrator/pipeline/latency.py): transcript, LLM time to first token, TTS time to
  first audio, first audio sent, and its own voice to voice.

It prints a Markdown table of p50/p90/p99 per session count, error counts and sessions
that completed, and writes the table, the same figures with p95 as JSON, and a PNG plot
(latency vs concurrent sessions). With `--stagger-s`, the sessions start spread over that
many seconds instead of all at once, as real users would.

    python bench/loadtest.py --sessions 1 4 16                   # URL and token from .env
    python bench/loadtest.py --url ws://127.0.0.1:3004 --token ... --turns 3 --out bench/results
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import websockets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devkit.realtime_client import append_event, speech  # noqa: E402
from kit.audio import SAMPLE_RATE  # noqa: E402

CHUNK_S = 0.1
METRICS = {
    "stt_first_word": "STT first word",
    "transcript": "end of speech → final transcript",
    "llm_first_token": "LLM time to first token",
    "tts_first_audio": "TTS time to first audio",
    "voice_to_voice": "voice to voice",
    "server_transcript": "server: end of speech → transcript",
    "server_first_audio_sent": "server: first TTS audio → sent",
    "server_voice_to_voice": "server: voice to voice",
}
# The orchestrator's stage names (orchestrator/pipeline/latency.py) -> the keys above.
SERVER_STAGES = {
    "transcript": "server_transcript",
    "llm_first_token": "llm_first_token",
    "tts_first_audio": "tts_first_audio",
    "first_audio_sent": "server_first_audio_sent",
    "voice_to_voice": "server_voice_to_voice",
}
PERCENTILES = (50, 90, 95, 99)


@dataclass
class Results:
    samples: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in METRICS})
    errors: int = 0
    sessions_ok: int = 0


# Server events whose first arrival in a turn is a mark the client-side figures are taken from.
FIRST_MARKS = {
    "conversation.item.input_audio_transcription.delta": "first_word",
    "conversation.item.input_audio_transcription.completed": "transcript",
    "response.output_audio.delta": "first_audio",
}


@dataclass
class TurnMarks:
    """When one turn's stages happened as the client saw them, and until when its reply plays."""

    results: Results
    marks: dict[str, float] = field(default_factory=dict)
    playing_until: float = 0.0

    def take(self, event: dict[str, Any]) -> bool:
        """Note one server event; True once the response is done."""
        kind, now = event["type"], time.monotonic()
        if kind in FIRST_MARKS:
            self.marks.setdefault(FIRST_MARKS[kind], now)
        if kind == "response.output_audio.delta":
            seconds = len(base64.b64decode(event["delta"])) / 2 / SAMPLE_RATE
            self.playing_until = max(self.playing_until, now) + seconds  # played in real time
        elif kind == "unmute_slurm.latency":
            for stage, key in SERVER_STAGES.items():
                if event["stages_ms"].get(stage) is not None:
                    self.results.samples[key].append(event["stages_ms"][stage])
        elif kind == "error":
            self.results.errors += 1
        return kind == "response.done"

    def record(self, started: float) -> None:
        """The client-side figures of the turn that began sending at `started`, in ms."""
        marks, samples = self.marks, self.results.samples
        if "first_word" in marks:
            samples["stt_first_word"].append((marks["first_word"] - started) * 1000)
        if "transcript" in marks:
            samples["transcript"].append((marks["transcript"] - marks["speech_end"]) * 1000)
        if "first_audio" in marks:
            samples["voice_to_voice"].append((marks["first_audio"] - marks["speech_end"]) * 1000)


async def one_turn(ws, audio: np.ndarray, speech_samples: int, results: Results) -> None:
    """Stream one phrase + silence in real time, read until response.done, play the reply out."""
    turn = TurnMarks(results)

    async def read() -> None:
        async for raw in ws:
            if turn.take(json.loads(raw)):
                return

    reader = asyncio.create_task(read())
    step = int(SAMPLE_RATE * CHUNK_S)
    started = time.monotonic()
    try:
        for i, start in enumerate(range(0, len(audio), step)):
            if start <= speech_samples < start + step:
                turn.marks["speech_end"] = time.monotonic()
            await ws.send(append_event(audio[start : start + step]))
            await asyncio.sleep(max(0.0, started + (i + 1) * CHUNK_S - time.monotonic()))
        await asyncio.wait_for(reader, 60)
    finally:
        # A send that failed leaves the reader running: stop it, and let its own failure show.
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    await asyncio.sleep(max(0.0, turn.playing_until - time.monotonic()))  # hear the reply out
    turn.record(started)


async def client(
    url: str, token: str, turns: int, speech: np.ndarray, results: Results, *, delay_s: float = 0.0
) -> None:
    """One simulated user: `turns` spoken turns on one session, opened after `delay_s`."""
    audio = np.concatenate([speech, np.zeros(int(SAMPLE_RATE * 2.5), np.float32)])
    headers = {"Authorization": f"Bearer {token}"}
    await asyncio.sleep(delay_s)
    try:
        async with websockets.connect(
            f"{url}/v1/realtime?extensions=unmute_slurm", additional_headers=headers, max_size=None
        ) as ws:
            for _ in range(turns):
                await one_turn(ws, audio, len(speech), results)
        results.sessions_ok += 1
    except (OSError, TimeoutError, websockets.WebSocketException):
        results.errors += 1


async def run_sessions(
    url: str, token: str, sessions: int, turns: int, speech: np.ndarray, *, stagger_s: float = 0.0
) -> Results:
    """`sessions` simulated users at once (started `stagger_s / sessions` apart)."""
    results = Results()
    delays = [i * stagger_s / sessions for i in range(sessions)]
    await asyncio.gather(*(client(url, token, turns, speech, results, delay_s=d) for d in delays))
    return results


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def summary(res: Results) -> dict[str, Any]:
    """One session count's figures as JSON: per metric its label, sample count and percentiles."""
    metrics = {
        key: {"label": label, "n": len(res.samples[key])}
        | {f"p{q}": percentile(res.samples[key], q) for q in PERCENTILES}
        for key, label in METRICS.items()
    }
    return {"errors": res.errors, "sessions_ok": res.sessions_ok, "metrics": metrics}


def table(rows: dict[int, Results]) -> str:
    lines = [
        "| sessions | metric | p50 (ms) | p90 (ms) | p99 (ms) | turns |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for n, res in rows.items():
        for key, label in METRICS.items():
            v = res.samples[key]
            cells = [percentile(v, q) for q in (50, 90, 99)]
            text = " | ".join("-" if c is None else f"{c:.0f}" for c in cells)
            lines.append(f"| {n} | {label} | {text} | {len(v)} |")
        lines.append(f"| {n} | errors / sessions completed | {res.errors} | | | {res.sessions_ok}/{n} |")
    return "\n".join(lines)


def plot(rows: dict[int, Results], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    counts = list(rows)
    for key, label in METRICS.items():
        p50 = [percentile(rows[n].samples[key], 50) or np.nan for n in counts]
        p90 = [percentile(rows[n].samples[key], 90) or np.nan for n in counts]
        line = ax.plot(counts, p50, marker="o", label=label)[0]
        ax.plot(counts, p90, linestyle="--", color=line.get_color(), alpha=0.6)
    ax.set_xscale("log", base=2)
    ax.set_xticks(counts, [str(c) for c in counts])
    ax.set_xlabel("concurrent sessions")
    ax.set_ylabel("ms (solid p50, dashed p90)")
    ax.set_title("Unmute latency vs load")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def env_value(key: str) -> str | None:
    env = ROOT / ".env"
    if env.exists():
        for line in env.read_text().splitlines():
            if line.startswith(f"{key}="):
                return line.split("=", 1)[1] or None
    return None


async def main_async(args: argparse.Namespace) -> None:
    phrase = speech()
    rows: dict[int, Results] = {}
    for n in args.sessions:
        rows[n] = results = await run_sessions(
            args.url, args.token, n, args.turns, phrase, stagger_s=args.stagger_s
        )
        samples = sum(len(v) for v in results.samples.values())
        print(f"{n} sessions done: {samples} samples, {results.errors} errors", file=sys.stderr)
    text = table(rows)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "loadtest.md").write_text(text + "\n")
    data = {str(n): {"sessions": n} | summary(res) for n, res in rows.items()}
    (args.out / "loadtest.json").write_text(json.dumps(data, indent=1) + "\n")
    plot(rows, args.out / "loadtest.png")


def orchestrator_parser(doc: str | None) -> argparse.ArgumentParser:
    """A benchmark's command line with the orchestrator to drive: --url and --token (from .env)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    port = env_value("ORCHESTRATOR_PORT") or "3004"
    parser.add_argument("--url", default=f"ws://127.0.0.1:{port}", help="orchestrator WebSocket base URL")
    parser.add_argument(
        "--token", default=env_value("ACCESS_TOKEN"), help="ACCESS_TOKEN (default: from .env)"
    )
    return parser


def main() -> None:
    parser = orchestrator_parser(__doc__)
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--turns", type=int, default=2, help="turns per session")
    parser.add_argument(
        "--stagger-s", type=float, default=0.0, help="spread the sessions' starts over this many seconds"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
