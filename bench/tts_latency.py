"""TTS latency benchmark: first word to first audio frame, and real-time factor.

Drives `engine.step` -- what the service's step loop runs in its worker thread -- with B
streams started together. Each stream gets a 20-word sentence, all words at once and
`Eos` after them (as an LLM that writes faster than speech would). Reported per batch
size: median time from the first word to the stream's first audio frame, and the
real-time factor (wall time to generate / duration of the audio; below 1 is faster than
real time).

    python bench/tts_latency.py                    # tiny moshi model (built now), espeak-ng and Piper
    python bench/tts_latency.py --engine piper --piper-threads 2 --text "The train leaves at nine every day."
    python bench/tts_latency.py --engine moshi --model kyutai/tts-1.6b-en_fr --device cuda --batch 1 16

espeak-ng and Piper speak a phrase at a time, so their first audio is that of the first
phrase (up to the first comma of the default sentence; Piper's first four words where there
is none), and at batch B the streams' first phrases are spoken one after another.
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

from kit.audio import SAMPLE_RATE
from services.tts.engines.base import SlotInput, StreamStart
from services.tts.settings import TtsSettings
from services.tts.text import split_words

SENTENCE = (
    "Good morning, this is a short test of streaming speech synthesis, "
    "measuring how quickly the first audio arrives for each listener."
)


def make_engine(args: argparse.Namespace, batch: int, tiny: Path | None):
    """The engine the service would load for these settings."""
    from services.tts.engines import load_engine

    model, voices, voice = args.model, args.voice_repo, args.voice
    if tiny is not None:
        model, voices, voice = str(tiny / "tts"), str(tiny / "tts-voices"), "tiny/default.wav"
    settings = TtsSettings(
        engine=args.engine, batch_size=batch, device=args.device, service_api_key="bench",
        model=model, voice_repo=voices, voice=voice, piper_threads=args.piper_threads,
    )  # fmt: skip
    return load_engine(settings)


def measure(engine, text: str) -> tuple[float, float]:
    """Median first-word-to-first-frame seconds, and the real-time factor, for a full batch."""
    words = split_words(text)
    started = time.perf_counter()
    result = engine.step(
        [
            SlotInput(b, StreamStart(engine.default_voice), list(words), eos=True)
            for b in range(engine.batch_size)
        ]
    )
    first: dict[int, float] = {}
    samples: dict[int, int] = dict.fromkeys(range(engine.batch_size), 0)
    done: set[int] = set()
    while True:
        now = time.perf_counter()
        for slot, out in result.outputs.items():
            if out.frames and slot not in first:
                first[slot] = now - started
            samples[slot] += sum(f.size for f in out.frames)
            if out.done:
                done.add(slot)
        if len(done) == engine.batch_size:
            break
        result = engine.step([])
    elapsed = time.perf_counter() - started
    audio_s = statistics.mean(samples.values()) / SAMPLE_RATE
    return statistics.median(first.values()), elapsed / audio_s


def main() -> None:
    """Run the sweep for each engine and print a Markdown table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engine", choices=["moshi", "espeak", "piper", "all"], default="all")
    parser.add_argument(
        "--model", default="kyutai/tts-1.6b-en_fr", help="with --engine moshi: repo id or directory"
    )
    parser.add_argument("--voice-repo", default="kyutai/tts-voices")
    parser.add_argument("--voice", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeat", type=int, default=3, help="runs per batch size; medians are reported")
    parser.add_argument("--text", default=SENTENCE, help="what each stream says")
    parser.add_argument("--piper-threads", type=int, default=1, help="piper: onnxruntime threads")
    args = parser.parse_args()

    tiny = None
    if args.engine == "all":
        from devkit.checkpoints import build_tiny_checkpoints

        tiny = build_tiny_checkpoints(Path(tempfile.mkdtemp()) / "tiny").root
    engines = ["moshi", "espeak", "piper"] if args.engine == "all" else [args.engine]
    print(
        f"# TTS latency: {platform.machine()}, {os.cpu_count()} CPUs, {len(args.text.split())}-word text, "
        f"Piper on {args.piper_threads} thread(s)\n"
    )
    print("| engine | batch | first word → first audio (ms, median) | real-time factor |")
    print("|---|---:|---:|---:|")
    for name in engines:
        args.engine = name
        for batch in args.batch:
            engine = make_engine(args, batch, tiny if name == "moshi" else None)
            engine.warmup()
            runs = [measure(engine, args.text) for _ in range(args.repeat)]
            label = "moshi (tiny)" if name == "moshi" and tiny else name
            first = statistics.median(r[0] for r in runs)
            rtf = statistics.median(r[1] for r in runs)
            print(f"| {label} | {batch} | {first * 1e3:.0f} | {rtf:.3f} |")


if __name__ == "__main__":
    main()
