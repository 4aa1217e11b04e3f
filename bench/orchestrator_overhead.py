"""Orchestrator overhead: what the orchestrator itself adds to a turn, and how many
real-time sessions one process carries.

The STT, TTS and LLM are instant fakes (the STT answers each frame and each Marker at
once, the TTS answers each word with one audio frame, the LLM is the echo responder),
so the time from a client's `input_audio_buffer.commit` + `response.create` to the first
`response.output_audio.delta` is the orchestrator's own work: event parsing, the STT
flush round trip, history, word splitting, the TTS round trip, encoding, loopback I/O.
The orchestrator runs as its own process (`python -m orchestrator`), as in production.

N sessions each stream audio in real time (100 ms appends) and take a turn every 2 s.
A session "falls behind" when its p99 turn overhead passes 200 ms.

The CPU column is the orchestrator's own CPU time (user + system, of its process and any
worker processes, read at the start and end of each row) per session-second: one core
carries 1000 / that many real-time sessions. CPU time is steadier than latency on a shared
machine, though each wakeup of the process has a cost of its own, so the figure falls a
little as sessions share wakeups. The fakes and the clients run in this process, so they
are not counted. `--workers N` runs the orchestrator as N worker processes.

    python bench/orchestrator_overhead.py --sessions 1 4 16 32 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import numpy as np
import psutil
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devkit.processes import free_port

CHUNK_S = 0.1
TURN_EVERY_S = 2.0
BEHIND_MS = 200.0


async def fake_stt(ws) -> None:
    """Ready, then a Step per 1920 samples and an immediate Marker echo."""
    await ws.send(msgpack.packb({"type": "Ready"}))
    buffered, step = 0, 0
    async for raw in ws:
        msg = msgpack.unpackb(raw)
        if msg["type"] == "Audio":
            buffered += len(msg["pcm"])
            while buffered >= 1920:
                buffered -= 1920
                step += 1
                if step % 10 == 0:
                    await ws.send(msgpack.packb({"type": "Word", "text": "hello", "start_time": step * 0.08}))
                prs = [0.0, 0.0, 0.0, 0.0]
                await ws.send(
                    msgpack.packb({"type": "Step", "step_idx": step, "prs": prs, "buffered_pcm": 0})
                )
        elif msg["type"] == "Marker":
            await ws.send(msgpack.packb({"type": "Marker", "id": msg["id"]}))


async def fake_tts(ws) -> None:
    """Ready, one 80 ms frame per word, close after Eos."""
    await ws.send(msgpack.packb({"type": "Ready"}))
    frame = np.zeros(1920, np.float32).tolist()
    async for raw in ws:
        msg = msgpack.unpackb(raw)
        if msg["type"] == "Text":
            await ws.send(msgpack.packb({"type": "Audio", "pcm": frame}, use_single_float=True))
        elif msg["type"] == "Eos":
            await ws.close()
            return


async def backends(port: int) -> None:
    """Both fakes on one port, told apart by path; /ready answers for the orchestrator's probe."""
    from websockets.asyncio.server import serve
    from websockets.http11 import Response

    def http(connection, request):
        if request.path.startswith("/ready"):
            return Response(200, "OK", websockets.Headers(), b'{"status":"ready"}')
        return None

    async def route(ws) -> None:
        await (fake_stt(ws) if ws.request.path.startswith("/api/asr") else fake_tts(ws))

    async with serve(route, "127.0.0.1", port, process_request=http, max_size=None):
        await asyncio.Future()


async def session(url: str, token: str, seconds: float, overheads: list[float]) -> None:
    async with websockets.connect(
        f"{url}/v1/realtime", additional_headers={"Authorization": f"Bearer {token}"}, max_size=None
    ) as ws:
        await ws.send(
            json.dumps({"type": "session.update", "session": {"audio": {"input": {"turn_detection": None}}}})
        )
        chunk = base64.b64encode((np.zeros(int(24000 * CHUNK_S), "<i2")).tobytes()).decode()
        asked: float | None = None
        started = time.monotonic()
        next_turn = started + TURN_EVERY_S

        async def reader() -> None:
            nonlocal asked
            async for raw in ws:
                event = json.loads(raw)
                if event["type"] == "response.output_audio.delta" and asked is not None:
                    overheads.append((time.monotonic() - asked) * 1000)
                    asked = None

        read = asyncio.create_task(reader())
        tick = started
        while time.monotonic() - started < seconds:
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
            if time.monotonic() >= next_turn and asked is None:
                asked = time.monotonic()
                await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
                await ws.send(json.dumps({"type": "response.create"}))
                next_turn += TURN_EVERY_S
            tick += CHUNK_S
            await asyncio.sleep(max(0.0, tick - time.monotonic()))
        await asyncio.sleep(0.5)
        read.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await read  # a reader that failed fails the run rather than shortening its sample


def wait_ready(url: str) -> None:
    import httpx

    for _ in range(200):
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("orchestrator did not become ready")


def cpu_seconds(proc: psutil.Process) -> float:
    """User + system CPU time of the orchestrator and its worker processes so far."""
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            times = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def start_orchestrator(
    backend_port: int, orch_port: int, token: str, workers: int
) -> subprocess.Popen[bytes]:
    """`python -m orchestrator` against the fakes, as production runs it."""
    env = {
        **os.environ,
        "SERVICE_API_KEY": "bench",
        "ACCESS_TOKEN": token,
        "LLM_URL": "echo",
        "STT_URL": f"ws://127.0.0.1:{backend_port}",
        "TTS_URL": f"ws://127.0.0.1:{backend_port}",
        "LOG_LEVEL": "WARNING",
        "ORCHESTRATOR_MAX_SESSIONS": "1000",
        "ORCHESTRATOR_WORKERS": str(workers),
    }
    root = Path(__file__).resolve().parents[1]
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "--port", str(orch_port)], env=env, cwd=root
    )


async def run(
    sessions: list[int],
    seconds: float,
    backend_port: int,
    orch_port: int,
    token: str,
    *,
    orchestrator: psutil.Process,
    workers: int,
) -> None:
    fakes = asyncio.create_task(backends(backend_port))
    try:
        await asyncio.to_thread(wait_ready, f"http://127.0.0.1:{orch_port}")
        print(
            f"# Orchestrator overhead: {os.cpu_count()} CPUs, {workers} orchestrator worker(s), "
            f"instant fake backends, {seconds:.0f} s a row\n"
        )
        print(
            "| sessions | turns | overhead p50 (ms) | overhead p99 (ms) | keeps up? "
            "| orchestrator CPU (ms per session-second) |"
        )
        print("|---:|---:|---:|---:|:---|---:|")
        url = f"ws://127.0.0.1:{orch_port}"
        for n in sessions:
            overheads: list[float] = []
            cpu_before, wall_before = cpu_seconds(orchestrator), time.monotonic()
            await asyncio.gather(*(session(url, token, seconds, overheads) for _ in range(n)))
            cpu = cpu_seconds(orchestrator) - cpu_before
            cpu_ms = 1000 * cpu / (n * (time.monotonic() - wall_before))
            p50 = statistics.median(overheads)
            p99 = float(np.percentile(overheads, 99))
            ok = "yes" if p99 < BEHIND_MS else "no"
            print(f"| {n} | {len(overheads)} | {p50:.1f} | {p99:.1f} | {ok} | {cpu_ms:.2f} |", flush=True)
    finally:
        fakes.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await fakes


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 4, 16, 32, 64])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=1, help="orchestrator worker processes")
    args = parser.parse_args()
    backend_port, orch_port, token = free_port(), free_port(), "bench-token"
    proc = start_orchestrator(backend_port, orch_port, token, args.workers)
    try:
        process = psutil.Process(proc.pid)
        bench = run(
            args.sessions,
            args.seconds,
            backend_port,
            orch_port,
            token,
            orchestrator=process,
            workers=args.workers,
        )
        asyncio.run(bench)
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
