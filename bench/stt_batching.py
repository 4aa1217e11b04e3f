"""STT batching benchmark: per-step latency and throughput of the service's own engines.

Drives `engine.step` and `engine.late_words` -- the calls the service's step loop makes in its
worker thread -- with every slot active, at several batch sizes, and reports how many real-time
streams one process sustains (a step must finish within one 80 ms frame). For the whisper
engine a step is its VAD; Whisper decodes in the engine's own thread meanwhile (on the tones
here, whatever the VAD takes for speech), competing for the same cores, and is measured by
bench/stt_accuracy.py.

    python bench/stt_batching.py                     # tiny moshi model, built on the fly
    python bench/stt_batching.py --engine whisper    # the CPU engine
    python bench/stt_batching.py --model kyutai/stt-1b-en_fr --device cuda --batch 1 16 64
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_TORCH_COMPILE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from kit.audio import FRAME_SECONDS, FRAME_SIZE


def make_engine(engine: str, model: str, batch: int, device: str):
    """The engine the service would load for these settings."""
    if engine == "whisper":
        from services.stt.engines.whisper_engine import WhisperSttEngine

        return WhisperSttEngine(batch)
    from services.stt.engines.moshi_engine import MoshiSttEngine
    from services.stt.settings import SttSettings

    settings = SttSettings(_env_file=None, model=model, batch_size=batch, device=device)
    return MoshiSttEngine(settings)


def measure(engine, steps: int, warmup: int) -> list[float]:
    """Seconds per step with all slots active on tonal audio."""
    rng = np.random.default_rng(0)
    t = np.arange(FRAME_SIZE) / 24000
    batch = engine.batch_size
    frames = np.stack([0.3 * np.sin(2 * np.pi * rng.uniform(150, 400) * t) for _ in range(batch)]).astype(
        np.float32
    )
    active = np.ones(batch, dtype=bool)
    engine.step(frames, active, reset=list(range(batch)))
    for _ in range(warmup):
        engine.step(frames, active, reset=[])
        engine.late_words()
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        engine.step(frames, active, reset=[])
        engine.late_words()
        times.append(time.perf_counter() - started)
    if hasattr(engine, "close"):
        engine.close()
    return times


def main() -> None:
    """Run the sweep and print a Markdown table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engine", choices=["moshi", "whisper"], default="moshi")
    parser.add_argument("--model", help="HF repo id or directory (default: tiny checkpoint built now)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4, 16, 32, 64, 128])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()

    model = args.model
    if args.engine == "moshi" and model is None:
        from devkit.checkpoints import build_tiny_checkpoints

        model = str(build_tiny_checkpoints(Path(tempfile.mkdtemp()) / "tiny").stt_dir)
    label = {"whisper": "whisper tiny.en"}.get(args.engine, "tiny moshi STT" if args.model is None else model)
    print(f"# STT batching: {label}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs\n")
    print("| batch | median step (ms) | p90 step (ms) | steps/s | stream-frames/s | real time? |")
    print("|---:|---:|---:|---:|---:|:---|")
    sustained = 0
    for batch in args.batch:
        times = measure(make_engine(args.engine, model, batch, args.device), args.steps, args.warmup)
        median = statistics.median(times)
        p90 = float(np.percentile(times, 90))
        realtime = p90 < FRAME_SECONDS
        if realtime:
            sustained = max(sustained, batch)
        print(
            f"| {batch} | {median * 1e3:.1f} | {p90 * 1e3:.1f} | {1 / median:.0f} | {batch / median:.0f} | "
            f"{'yes' if realtime else 'no'} |"
        )
    print(f"\nReal-time streams sustained by one process (largest batch with p90 step < 80 ms): {sustained}")


if __name__ == "__main__":
    main()
