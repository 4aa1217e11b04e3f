"""Host-side time of one STT step: everything `MoshiSttEngine.step` does that is not the model.

On a GPU the model (Mimi's encoder and the LM) is device work; what the step does besides
it on the CPU (pause detection, word decoding, building the results, copies) is what can
pace the step when it grows with the batch. This measures that part on any machine: the
engine is built on the tiny test configuration (random weights, CPU, float32) and its model
is replaced by precomputed outputs of the right shapes, so only the rest is timed.

Every slot streams real speech with pauses (devkit/fixtures/weather_16k.wav and silences, at a
different offset per slot); each step about 5% of the slots have no frame, and streams end
and new ones start in their slots at random (a minute long on average). Per row:

- host ms: the step with the model and, where the engine runs the VAD as tensor ops on the
  model's device, the VAD's tensor work replaced by precomputed outputs: the CPU time a GPU
  step costs besides issuing device work. Issuing the VAD's ops is timed once, at batch 1
  where their compute is negligible, and printed under the table.
- VAD compute ms: what that tensor work costs on this CPU (a CPU-only deployment pays it; on
  a GPU it is device work). Engines that run the VAD on the host have it inside host ms.

    python bench/stt_host_overhead.py                      # batch 64 256 512, both pause sources
    python bench/stt_host_overhead.py --before /tmp/before # also the code in /tmp/before, e.g.
        # mkdir /tmp/before && git archive COMMIT services | tar -x -C /tmp/before

Times are the step thread's CPU time by default (`--clock cpu`): the work itself, unmoved by
other processes on a shared machine; `--clock wall` adds what preemption costs.

Prints a Markdown table (and writes it with the command line to --out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "devkit" / "fixtures" / "weather_16k.wav"
PAUSE_SOURCES = {"silero": False, "heads": True}  # name -> the model has end-of-turn heads
INACTIVE_SHARE = 0.05
CLOCKS = {"cpu": time.thread_time, "wall": time.perf_counter}
STREAM_STEPS = 750  # a stream lasts a minute on average: at batch 512 most steps start one
VOICED_RMS = 0.01
TEXT_CARD = 64
_TOKENIZER_TEXT = [
    "the weather is nice today. one two three.",
    "hello world, this is a test of the tiny speech models.",
    "good morning, how are you today? i am fine, thank you very much.",
]


@dataclass
class Row:
    """One measured configuration (times in ms)."""

    batch: int
    pauses: str
    median_ms: float
    p99_ms: float
    vad_compute_ms: float | None = None

    @property
    def ratio(self) -> float:
        return self.p99_ms / self.median_ms if self.median_ms else float("nan")


def _setup_imports(code: Path) -> None:
    os.environ.setdefault("NO_TORCH_COMPILE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(code))


def build_engine(batch: int, heads: bool, workdir: Path) -> Any:
    """A `MoshiSttEngine` on the tiny STT architecture with random weights (CPU, float32)."""
    from devkit.checkpoints import (
        random_init_info,
        tiny_mimi_config,
        tiny_stt_config,
        train_tokenizer,
    )
    from services.stt.engines.moshi_engine import MoshiSttEngine
    from services.stt.settings import SttSettings

    tokenizer = workdir / "tokenizer.model"
    if not tokenizer.exists():
        train_tokenizer(tokenizer, _TOKENIZER_TEXT * 4, 64)
    config = tiny_stt_config(TEXT_CARD, heads=heads, delay_s=0.5, prefix_s=0.0)
    info = random_init_info(config, tokenizer, tiny_mimi_config())
    settings = SttSettings(_env_file=None, batch_size=batch, device="cpu", dtype="float32")
    return MoshiSttEngine(settings, info)


class ModelStub:
    """Stands in for Mimi's encoder and the LM: returns the outputs set for the coming step."""

    def __init__(self, engine: Any) -> None:
        import torch

        self.codes = torch.zeros(engine.batch_size, 32, 1, dtype=torch.long)
        self.tokens: Any = None
        self.heads: list[Any] = []
        engine.mimi.encode = lambda pcm: self.codes
        engine.lm_gen.step = lambda codes: self.tokens
        engine.lm_gen.step_with_extra_heads = lambda codes: (self.tokens, self.heads)

    def set_outputs(self, tokens: Any, pause_probs: Any) -> None:
        """Next step's text tokens [B] and pause-head probabilities [B] (one value for all 4 heads)."""
        import torch

        self.tokens = torch.from_numpy(tokens)[:, None, None]
        probs = torch.from_numpy(pause_probs).float()[:, None, None].expand(-1, 1, 6).contiguous()
        self.heads = [probs] * 4


def stub_vad(engine: Any) -> bool:
    """Replace the VAD's device work (resampling, windows, Silero network) by constant outputs.

    Only engines that run the VAD as tensor ops have that part; returns whether it did.
    """
    import numpy as np
    import torch

    vad = getattr(engine, "silero", None)
    if vad is None or not hasattr(vad, "compute"):
        return False
    rng = np.random.default_rng(1)
    probs = torch.from_numpy(rng.uniform(0, 1, (engine.batch_size, 3)).astype(np.float32))
    vad.compute = lambda pcm, active_mask, plan: probs
    return True


class Load:
    """Per-slot speech and silence, inactive slots, restarts and LM outputs for each step."""

    def __init__(self, batch: int, vocab: int, seed: int = 0) -> None:
        import numpy as np
        import soundfile

        from kit.audio import FRAME_SIZE, SAMPLE_RATE, resample

        speech, rate = soundfile.read(FIXTURE, dtype="float32")
        speech = resample(speech, rate, SAMPLE_RATE)
        rng = np.random.default_rng(seed)

        def silence(seconds: float) -> np.ndarray:
            return np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32)

        noisy = speech + rng.normal(0, 0.01, speech.size).astype(np.float32)
        self.track = np.concatenate(
            [speech, silence(0.6), 0.5 * speech, silence(1.5), noisy, silence(3.0)]
        ).astype(np.float32)
        self.batch = batch
        self.vocab = vocab
        self.rng = rng
        self.offsets = rng.integers(0, self.track.size, batch)
        self.words = np.zeros(batch, dtype=np.int64)
        self.span = np.arange(FRAME_SIZE)
        self.frame_size = FRAME_SIZE

    def step(self, k: int) -> tuple[Any, Any, list[int], Any, Any]:
        """frames, active, reset, text tokens and pause probabilities of step `k`."""
        import numpy as np

        index = (self.offsets[:, None] + k * self.frame_size + self.span) % self.track.size
        frames = self.track[index]
        active = self.rng.random(self.batch) >= INACTIVE_SHARE
        reset = np.flatnonzero(self.rng.random(self.batch) < 1 / STREAM_STEPS).tolist()
        active[reset] = True
        voiced = np.sqrt(np.mean(frames**2, axis=1)) > VOICED_RMS
        self.words += voiced
        text = self.rng.integers(4, self.vocab, self.batch)
        tokens = np.where(voiced, np.where(self.words % 4 == 1, 0, text), 3).astype(np.int64)
        pause_probs = np.where(voiced, 0.05, 0.9)
        return frames, active, reset, tokens, pause_probs


def measure(batch: int, pauses: str, *, steps: int, warmup: int, workdir: Path, clock: str) -> Row:
    """Host ms per step (and VAD compute ms where the VAD is device work) for one configuration."""
    import numpy as np

    now = CLOCKS[clock]

    def timed(stub_the_vad: bool) -> tuple[list[float], bool]:
        engine = build_engine(batch, PAUSE_SOURCES[pauses], workdir)
        model = ModelStub(engine)
        stubbed = stub_vad(engine) if stub_the_vad else False
        load = Load(batch, vocab=engine.tokenizer.vocab_size())
        all_slots = np.ones(batch, dtype=bool)
        frames, _, _, tokens, probs = load.step(0)
        model.set_outputs(tokens, probs)
        engine.step(frames, all_slots, list(range(batch)))
        times = []
        for k in range(1, warmup + steps + 1):
            frames, active, reset, tokens, probs = load.step(k)
            model.set_outputs(tokens, probs)
            start = now()
            engine.step(frames, active, reset)
            if k > warmup:
                times.append(now() - start)
        return times, stubbed

    host, vad_stubbed = timed(stub_the_vad=True)
    host_ms = 1000 * np.asarray(host)
    row = Row(batch, pauses, round(float(np.median(host_ms)), 3), round(float(np.percentile(host_ms, 99)), 3))
    if vad_stubbed:
        full, _ = timed(stub_the_vad=False)
        row.vad_compute_ms = round(float(np.median(1000 * np.asarray(full))) - row.median_ms, 3)
    return row


def vad_issue_ms(steps: int, clock: str) -> float | None:
    """Median ms to issue one step of the VAD's tensor ops, at batch 1 (None: no such VAD)."""
    import numpy as np
    import torch

    from services.stt.engines import silero_pauses

    if not hasattr(silero_pauses.SileroPauses, "compute"):
        return None
    vad = silero_pauses.SileroPauses(1, torch.device("cpu"))
    pcm = torch.zeros(1, 1920)
    active = np.ones(1, dtype=bool)
    mask = torch.from_numpy(active)
    times = []
    for _ in range(steps):
        start = CLOCKS[clock]()
        vad.finish(vad.launch(pcm, active, mask).numpy())
        times.append(CLOCKS[clock]() - start)
    return round(1000 * float(np.median(times)), 3)


def _fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def table(rows: list[Row], before: dict[tuple[int, str], Row]) -> str:
    """The Markdown table: one line per batch and pause source."""
    head = "| batch | pauses | host ms median | host ms p99 | p99/median | µs per slot |"
    head += " VAD compute ms (this CPU) |"
    rule = "|---:|:---|---:|---:|---:|---:|---:|"
    if before:
        head += " before: host ms median | before: p99 | before: p99/median |"
        rule += "---:|---:|---:|"
    lines = [head, rule]
    for row in rows:
        line = (
            f"| {row.batch} | {row.pauses} | {row.median_ms:.2f} | {row.p99_ms:.2f} | {row.ratio:.2f} | "
            f"{1000 * row.median_ms / row.batch:.1f} | {_fmt(row.vad_compute_ms)} |"
        )
        old = before.get((row.batch, row.pauses))
        if before:
            line += f" {old.median_ms:.2f} | {old.p99_ms:.2f} | {old.ratio:.2f} |" if old else " — | — | — |"
        lines.append(line)
    return "\n".join(lines)


def _measure_before(code: Path, args: argparse.Namespace, batch: int, pauses: str) -> Row:
    """The same measurement on another checkout's `services` (run in a fresh interpreter)."""
    command = [sys.executable, __file__, "--code", str(code), "--json"]
    command += ["--batch", str(batch), "--pauses", pauses, "--steps", str(args.steps)]
    command += ["--warmup", str(args.warmup), "--threads", str(args.threads), "--clock", args.clock]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return Row(**json.loads(out.strip().splitlines()[-1])[0])


def main() -> None:
    """Measure every batch size and pause source; print (and optionally write) the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, nargs="+", default=[64, 256, 512])
    parser.add_argument("--pauses", nargs="+", choices=sorted(PAUSE_SOURCES), default=["silero", "heads"])
    parser.add_argument("--steps", type=int, default=100, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadier figures)")
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="cpu",
        help="cpu: the step thread's CPU time (the work itself, steady on a shared machine); "
        "wall: elapsed time, preemption by other processes included",
    )
    parser.add_argument("--before", type=Path, help="a directory holding another version's services/")
    parser.add_argument("--code", type=Path, default=ROOT, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help="also write the table, with this command line, here")
    args = parser.parse_args()
    _setup_imports(args.code)
    import services

    for tree in (args.code, args.before):
        if tree is not None and not (tree / "services").is_dir():
            parser.error(f"{tree} holds no services/ to measure")
    if Path(services.__file__).resolve().parents[1] != args.code.resolve():
        parser.error(f"services was imported from {services.__file__}, not from {args.code}")

    import torch

    torch.set_num_threads(args.threads)
    rows: list[Row] = []
    before: dict[tuple[int, str], Row] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for batch in args.batch:
            for pauses in args.pauses:
                if args.before is not None:
                    before[(batch, pauses)] = _measure_before(args.before, args, batch, pauses)
                row = measure(
                    batch, pauses, steps=args.steps, warmup=args.warmup, workdir=Path(tmp), clock=args.clock
                )
                rows.append(row)
                print(f"measured batch {batch} {pauses}", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps([asdict(r) for r in rows]))
        return
    issue = vad_issue_ms(args.steps, args.clock) if "silero" in args.pauses else None
    title = (
        f"# STT host-side time per step: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__} on {args.threads} thread(s), {args.clock} clock, "
        f"{args.steps} steps after {args.warmup} warm-up"
    )
    text = f"{title}\n\n{table(rows, before)}\n"
    if issue is not None:
        text += f"\nIssuing the VAD's tensor ops (timed at batch 1): {issue:.2f} ms per step.\n"
    print(text)
    if args.out is not None:
        command = " ".join(["python", *sys.argv])
        args.out.write_text(f"{text}\nCommand: `{command}`\n")


if __name__ == "__main__":
    main()
