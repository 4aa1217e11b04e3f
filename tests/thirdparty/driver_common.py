"""What the Pipecat and LiveKit drivers share: the speech fixture, a live microphone, waiting
for a step with a deadline, and the JSON report the pytest side reads.

The drivers run in `.venv-clients` (those libraries need a newer aiohttp than moshi allows),
so this module imports nothing from the project and only the standard library.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import time
import urllib.request
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).resolve().parents[2] / "devkit" / "fixtures" / "weather_16k.wav"
RATE = 16_000  # the fixture's rate: each library resamples to the API's 24 kHz itself
CHUNK_S = 0.1
MIN_AUDIO_S = 0.5  # reply audio that shows a reply is really playing
STEP_TIMEOUT_S = 20.0
MAX_ERRORS = 10  # distinct errors kept in the report


class StepTimeout(Exception):
    """A step of the scenario did not happen in time; its description is the message."""


def speech() -> bytes:
    """The speech fixture as 16 kHz mono PCM16."""
    with wave.open(str(FIXTURE)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (RATE, 1, 2)
        return wav.readframes(wav.getnframes())


class Microphone:
    """Sends 16 kHz PCM16 in real time, as a live microphone does: queued speech, else silence.

    The server's turn detection needs the silence after speech to end a turn, and a steady
    stream is what a transport feeds these libraries anyway.
    """

    def __init__(self, send: Callable[[bytes], Awaitable[None]]) -> None:
        self.send = send
        self.pending = bytearray()

    def say(self, pcm: bytes) -> None:
        """Speak `pcm` next (after anything still queued)."""
        self.pending += pcm

    async def run(self) -> None:
        """Stream until cancelled, on a fixed schedule so that slow sends do not drift."""
        size = int(RATE * CHUNK_S) * 2
        start = time.monotonic()
        for n in itertools.count():
            chunk = bytes(self.pending[:size]).ljust(size, b"\0")
            del self.pending[:size]
            await self.send(chunk)
            await asyncio.sleep(max(0.0, start + (n + 1) * CHUNK_S - time.monotonic()))


async def until(step: str, ready: Callable[[], Any], timeout_s: float = STEP_TIMEOUT_S) -> Any:
    """The first truthy value of `ready()`, polled; `StepTimeout(step)` if none comes in time."""
    deadline = time.monotonic() + timeout_s
    while not (value := ready()):
        if time.monotonic() > deadline:
            raise StepTimeout(step)
        await asyncio.sleep(0.05)
    return value


async def stop(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait until it has ended."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def arguments() -> argparse.Namespace:
    """`--url` (the orchestrator's ws:// base), `--token` (its ACCESS_TOKEN), `--out` (the report),
    `--llm` (the scripted LLM's base URL, for a scenario that changes its script between steps)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True, help="orchestrator base URL, e.g. ws://127.0.0.1:3004")
    parser.add_argument("--token", required=True, help="the orchestrator's ACCESS_TOKEN")
    parser.add_argument("--out", required=True, type=Path, help="where to write the JSON report")
    parser.add_argument(
        "--llm", default=None, help="the scripted LLM (devkit/llm_server.py), e.g. http://..."
    )
    return parser.parse_args()


def script_llm(llm_url: str, **behaviour: Any) -> None:
    """Tell the scripted LLM what its next completions do (devkit/llm_server.py's /control)."""
    body = json.dumps(behaviour).encode()
    request = urllib.request.Request(f"{llm_url}/control", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as answer:
        answer.read()


def run(scenario: Callable[[argparse.Namespace, dict[str, Any]], Awaitable[None]]) -> None:
    """Run `scenario(args, report)` and write `report` as JSON, with the step that failed, if any.

    The report is written whatever happens, so the test can say how far the library got.
    """
    args = arguments()
    report: dict[str, Any] = {"failed_step": None, "errors": []}
    started = time.monotonic()
    try:
        asyncio.run(scenario(args, report))
    except StepTimeout as exc:
        report["failed_step"] = str(exc)
    except Exception as exc:
        report["failed_step"] = f"crashed: {exc!r}"
        raise
    finally:
        report["elapsed_s"] = round(time.monotonic() - started, 2)
        # A library failing on every audio delta logs the same error hundreds of times.
        report["errors"] = list(dict.fromkeys(report["errors"]))[:MAX_ERRORS]
        args.out.write_text(json.dumps(report, indent=2))
