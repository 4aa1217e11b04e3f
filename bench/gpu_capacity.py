"""How many real-time STT and TTS streams one GPU carries, at the real model sizes.

The project's own engines (`MoshiSttEngine`, `MoshiTtsEngine`: the batched step loops the
services run, CUDA graphs and all) are built on random weights with the published
architectures (`bench/architectures.json`, sources inside; Mimi is moshi's own default
config). A step costs the same whatever the weights hold, so step times and memory are
the real ones; what comes out is noise.

Per batch size: wall time per step (median, p99), GPU-busy time per step on CUDA (the
kernels and copies the profiler saw), peak GPU memory. For the TTS also: first audio when
every slot starts together; first audio of a stream that starts while the other B-1 slots
speak (the case a user's reply meets), with the engine's catch-up steps off and on; and
where a step's time goes (main transformer, depformer, Mimi decode, the rest).

    python bench/gpu_capacity.py                  # on a GPU: full sizes, bf16
    python bench/gpu_capacity.py --tiny           # anywhere: the tiny test configs on CPU (CI)

Prints Markdown tables and writes JSON + Markdown to bench/results/ (gpu_capacity[-tiny].*).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import multiprocessing as mp
import platform
import random
import string
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from copy import deepcopy
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Run as a script from anywhere: the checkout's devkit (never installed) and its packages.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import moshi
import numpy as np
import torch
from moshi.models.loaders import CheckpointInfo

from devkit.checkpoints import (
    random_init_info,
    tiny_mimi_config,
    tiny_stt_config,
    tiny_tts_config,
    train_tokenizer,
)
from kit.audio import FRAME_SECONDS, FRAME_SIZE
from services.stt.engines.moshi_engine import MoshiSttEngine
from services.stt.settings import SttSettings
from services.tts.engines.base import SlotInput, StepResult, StreamStart
from services.tts.engines.moshi_engine import MoshiTtsEngine
from services.tts.settings import TtsSettings
from services.tts.text import Word

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURES = Path(__file__).with_name("architectures.json")
RESULTS = ROOT / "bench" / "results"
REAL_TIME_MS = 1000 * FRAME_SECONDS  # one step is one 80 ms frame of every stream
VOICE = "bench/default.wav"
# Long enough that no slot runs out of words while it is being timed.
TEXT = " ".join(["Here is a long answer that keeps every slot of the batch busy while it is timed."] * 20)
DIAGNOSTIC_STEPS = 20  # steps of each diagnostic pass (GPU-busy time, TTS step parts)
TTS_PARTS = ("main transformer", "depformer", "Mimi decode")


@dataclass
class Model:
    """A checkpoint resolved in memory: config and tokenizer real, weights random."""

    name: str
    kind: str  # "stt" or "tts"
    info: CheckpointInfo
    voices: Path | None = None


@dataclass
class StepStats:
    batch: int
    median_ms: float | None = None
    p99_ms: float | None = None
    peak_gib: float | None = None
    error: str | None = None
    #: GPU-busy time per step (kernels and copies, overlaps counted once); None off CUDA.
    gpu_median_ms: float | None = None
    gpu_p99_ms: float | None = None

    @property
    def real_time(self) -> bool:
        return self.p99_ms is not None and self.p99_ms < REAL_TIME_MS


# ---- models -------------------------------------------------------------------------------


def _tokenizer(path: Path, vocab: int) -> None:
    """Exactly `vocab` pieces, so that every token id a random LM emits decodes."""
    rng = random.Random(vocab)
    words = sorted({"".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9))) for _ in range(40000)})
    train_tokenizer(path, [" ".join(rng.sample(words, 12)) for _ in range(20000)], vocab, exact=True)


def _voice(directory: Path, config: dict) -> Path:
    """One voice embedding in the layout of kyutai/tts-voices (a Mimi latent, 512-d for 1.6b)."""
    from safetensors.torch import save_file

    model_id = config["model_id"]
    dim = config["conditioners"]["speaker_wavs"]["tensor"]["dim"]
    target = directory / f"{VOICE}.{model_id['sig']}@{model_id['epoch']}.safetensors"
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file({"speaker_wavs": torch.randn(1, dim, 125)}, str(target))  # 10 s of latent
    return directory


def models(tiny: bool, workdir: Path, only: str | None = None) -> list[Model]:
    """The STT and TTS models to measure (or just `only`), with weights left to random init."""
    if tiny:
        mimi = tiny_mimi_config()
        configs = {
            "tiny-stt": tiny_stt_config(128, heads=True, delay_s=0.5, prefix_s=0.0),
            "tiny-tts": tiny_tts_config(128),
        }
    else:
        mimi = None  # moshi's default: the Mimi every Kyutai STT/TTS checkpoint uses
        published = json.loads(ARCHITECTURES.read_text())["models"]
        configs = {name: entry["config"] for name, entry in published.items()}
    out = []
    for name, published in configs.items():
        if only is not None and name != only:
            continue
        config = deepcopy(published)  # moshi's conditioner builder writes into these dicts
        kind = config["model_type"]
        tokenizer = workdir / name / "tokenizer.model"
        tokenizer.parent.mkdir(parents=True)
        _tokenizer(tokenizer, config["text_card"])
        info = random_init_info(config, tokenizer, mimi)
        voices = _voice(workdir / name / "voices", config) if kind == "tts" else None
        out.append(Model(name, kind, info, voices))
    return out


# ---- engines ------------------------------------------------------------------------------


def stt_engine(model: Model, batch: int, device: str) -> MoshiSttEngine:
    settings = SttSettings(_env_file=None, model=model.name, batch_size=batch, device=device)
    return MoshiSttEngine(settings, model.info)


def tts_engine(model: Model, batch: int, device: str, catchup_ms: float | None = None) -> MoshiTtsEngine:
    assert model.voices is not None
    settings = TtsSettings(  # the service's defaults, not whatever a local .env says
        _env_file=None,
        model=model.name,
        voice_repo=str(model.voices),
        voice=VOICE,
        batch_size=batch,
        device=device,
        **({} if catchup_ms is None else {"catchup_ms": catchup_ms}),
    )
    return MoshiTtsEngine(settings, model.info)


def _release(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device: str) -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.startswith("cuda") else None


def _ms(seconds: Sequence[float], percentile: float) -> float:
    return round(float(np.percentile(1000 * np.asarray(seconds), percentile)), 2)


def _stats(batch: int, times: list[float], device: str) -> StepStats:
    return StepStats(batch, _ms(times, 50), _ms(times, 99), _peak_gib(device))


def busy_seconds(spans: Iterable[tuple[float, float]]) -> float:
    """Length of the union of (start, end) spans in µs, in seconds: overlapping work counts once."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total / 1e6


def _gpu_busy(load: SttLoad | TtsLoad, steps: int) -> list[float] | None:
    """GPU-busy seconds of each of `steps` steps: the kernels and copies CUPTI saw.

    Not CUDA events around the step: a step returns host data, so the GPU is idle at both
    of its ends and the events would time the wall again. Each step is profiled alone; the
    profiler slows the host, so these steps are not the ones whose wall time is reported.
    """
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    busy = []
    try:
        for _ in range(steps):
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                load.step()
            device_spans = (e.time_range for e in prof.events() if e.device_type == DeviceType.CUDA)
            busy.append(busy_seconds((span.start, span.end) for span in device_spans))
    except RuntimeError as exc:  # a profiler that cannot attach must not lose the run's other numbers
        print(f"GPU-busy time not measured: {exc}", file=sys.stderr)
        return None
    if not any(busy):
        print("GPU-busy time not measured: the profiler saw no GPU work", file=sys.stderr)
        return None
    return busy


def _add_gpu_busy(stats: StepStats, load: SttLoad | TtsLoad, device: str, steps: int) -> None:
    busy = _gpu_busy(load, steps) if device.startswith("cuda") else None
    if busy is not None:
        stats.gpu_median_ms, stats.gpu_p99_ms = _ms(busy, 50), _ms(busy, 99)


class SttLoad:
    """Every slot of an STT engine streaming noise-like audio, one frame per step."""

    def __init__(self, model: Model, batch: int, device: str) -> None:
        self.engine = stt_engine(model, batch, device)
        rng = np.random.default_rng(0)
        self.frames = (0.1 * rng.standard_normal((batch, FRAME_SIZE))).astype(np.float32)
        self.active = np.ones(batch, dtype=bool)

    def step(self) -> None:
        self.engine.step(self.frames, self.active, [])  # returns host data: the step has finished


class TtsLoad:
    """Every slot of a TTS engine speaking a long text (new streams start in any slot)."""

    def __init__(self, model: Model, batch: int, device: str, catchup_ms: float | None = None) -> None:
        self.engine = tts_engine(model, batch, device, catchup_ms)
        self.batch = batch
        self.pending: list[SlotInput] = []
        self.start(range(batch))

    def start(self, slots: Iterable[int]) -> None:
        """New streams in these slots (each slot's state is reset, as for a new client)."""
        words = [Word(w) for w in TEXT.split()]
        voice = self.engine.default_voice
        self.pending += [SlotInput(b, StreamStart(voice), list(words)) for b in slots]

    def step(self) -> StepResult:
        result = self.engine.step(self.pending)
        self.pending = []
        return result

    def first_audio(self, together: bool) -> tuple[float, int]:
        """Wall seconds and steps from the step that gives slot 0 a new stream (every slot
        one, if `together`) to the step that returns its first audio. Otherwise the other
        slots must return audio on each of those steps: they are mid-speech."""
        self.start(range(self.batch) if together else [0])
        start = time.perf_counter()
        for steps in itertools.count(1):
            outputs = self.step().outputs
            others = [out for b, out in outputs.items() if b != 0 and out.frames]
            if not together and len(others) < self.batch - 1:
                raise RuntimeError("a slot stopped speaking during the measurement: TEXT is too short")
            if 0 in outputs and outputs[0].frames:
                return time.perf_counter() - start, steps
        raise AssertionError("unreachable")


def _timed_steps(
    load: SttLoad | TtsLoad, steps: int | None = None, seconds: float | None = None
) -> list[float]:
    """Wall seconds of each step, for `steps` steps or for `seconds` of stepping."""
    times: list[float] = []
    end = time.monotonic() + seconds if seconds is not None else None
    while (end is not None and time.monotonic() < end) or (steps is not None and len(times) < steps):
        start = time.perf_counter()
        load.step()
        times.append(time.perf_counter() - start)
    return times


def measure_stt(model: Model, batch: int, device: str, steps: int, warmup: int) -> StepStats:
    _release(device)
    try:
        load = SttLoad(model, batch, device)
        _timed_steps(load, warmup)  # CUDA graphs are captured on the first steps
        stats = _stats(batch, _timed_steps(load, steps), device)
        _add_gpu_busy(stats, load, device, min(steps, DIAGNOSTIC_STEPS))
        return stats
    except torch.OutOfMemoryError:
        return StepStats(batch, error="out of memory")
    finally:
        load = None  # drop the engine before the next batch size is built
        _release(device)


@dataclass
class TtsStats(StepStats):
    #: Every slot starts together: from the step that gave the words to the step that
    #: returned slot 0's first audio.
    first_audio_ms: float | None = None
    first_audio_steps: int | None = None
    #: Slot 0 starts while the other slots speak: "catchup_ms", and per "off" / "on" the
    #: p50 and p95 ms and the median steps from words to first audio.
    under_load: dict[str, Any] | None = None
    #: Mean ms per step, every slot speaking: TTS_PARTS, "rest" and the whole "step".
    parts_ms: dict[str, float] | None = None


def _tts_parts(load: TtsLoad, steps: int) -> dict[str, float]:
    """Where a step's time goes: the main transformer, the depformer and Mimi's decoding,
    each bracketed by device syncs so that its GPU work counts in it; the rest is host work
    (Python, the text state machines, sampling) and the small kernels between the parts."""
    engine = load.engine
    state = engine.lm_gen._streaming_state
    assert state is not None and state.graphed_depth is not None
    sync = torch.cuda.synchronize if engine.device.type == "cuda" else (lambda: None)
    spent = dict.fromkeys(TTS_PARTS, 0.0)

    def timed(part: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any) -> Any:
            sync()
            start = time.perf_counter()
            out = call(*args)
            sync()
            spent[part] += time.perf_counter() - start
            return out

        return run

    graphed = state.graphed_main, state.graphed_depth
    state.graphed_main = timed("main transformer", state.graphed_main)  # type: ignore[assignment]
    state.graphed_depth = timed("depformer", state.graphed_depth)  # type: ignore[assignment]
    engine.tts.mimi.decode = timed("Mimi decode", engine.tts.mimi.decode)  # type: ignore[method-assign]
    rows = []
    try:
        for _ in range(steps):
            spent.update(dict.fromkeys(TTS_PARTS, 0.0))
            start = time.perf_counter()
            load.step()
            wall = time.perf_counter() - start
            rows.append({**spent, "rest": wall - sum(spent.values()), "step": wall})
    finally:
        state.graphed_main, state.graphed_depth = graphed
        del engine.tts.mimi.decode  # the class's method again
    # Means, not medians: the parts and the rest then add up to the step.
    return {part: round(1000 * float(np.mean([row[part] for row in rows])), 2) for part in rows[0]}


def _under_load(load: TtsLoad, trials: int) -> dict[str, Any]:
    """First audio of slot 0, restarted `trials` times while the others speak, with the
    engine's catch-up steps off, then on with its budget."""
    engine = load.engine
    budget = engine.catchup_s
    out: dict[str, Any] = {"catchup_ms": round(1000 * budget, 1)}
    try:
        for name, seconds in (("off", 0.0), ("on", budget)):
            engine.catchup_s = seconds
            runs = [load.first_audio(together=False) for _ in range(trials)]
            times = [s for s, _ in runs]
            steps = int(np.median([n for _, n in runs]))
            out[name] = {"p50_ms": _ms(times, 50), "p95_ms": _ms(times, 95), "steps": steps}
    finally:
        engine.catchup_s = budget
    return out


def measure_tts(
    model: Model,
    batch: int,
    device: str,
    steps: int,
    warmup: int,
    *,
    trials: int,
    catchup_ms: float | None,
) -> TtsStats:
    _release(device)
    load = None
    try:
        try:
            load = TtsLoad(model, batch, device, catchup_ms)
        except ValueError as exc:  # a setup the engine refuses to run (torch.compile on CUDA)
            return TtsStats(batch, error=str(exc))
        # The first steps capture CUDA graphs and run lazy init, as the service's warm-up does;
        # then every slot starts a new stream, and time to first audio is timed from there.
        _timed_steps(load, warmup)
        together_s, together_steps = load.first_audio(together=True)
        # Steady state: every slot generating and decoding audio.
        stats = TtsStats(
            **asdict(_stats(batch, _timed_steps(load, steps), device)),
            first_audio_ms=round(1000 * together_s, 1),
            first_audio_steps=together_steps,
        )
        diagnostic = min(steps, DIAGNOSTIC_STEPS)
        stats.parts_ms = _tts_parts(load, diagnostic)
        _add_gpu_busy(stats, load, device, diagnostic)
        stats.under_load = _under_load(load, trials)
        return stats
    except torch.OutOfMemoryError:
        return TtsStats(batch, error="out of memory")
    finally:
        load = None
        _release(device)


# ---- contention: STT and TTS in two processes on one device --------------------------------


@dataclass(frozen=True)
class Contender:
    """One engine of the contention run, in its own process (the model is pickled across)."""

    model: Model
    batch: int
    device: str
    seconds: float


def _contend(job: Contender, barrier, results) -> None:
    kind = job.model.kind
    load = (
        SttLoad(job.model, job.batch, job.device)
        if kind == "stt"
        else TtsLoad(job.model, job.batch, job.device)
    )
    _timed_steps(load, 20)
    barrier.wait()
    times = _timed_steps(load, seconds=job.seconds)
    barrier.wait()  # both were loaded for the whole window
    results.put((kind, asdict(_stats(job.batch, times, job.device))))


def measure_contention(defaults: dict[str, tuple[Model, int]], device: str, seconds: float) -> dict[str, Any]:
    """Each engine alone, then both at once (separate processes, as the services run)."""
    ctx = mp.get_context("spawn")  # CUDA cannot be forked
    out: dict[str, Any] = {}
    for together in (("stt",), ("tts",), ("stt", "tts")):
        barrier, results = ctx.Barrier(len(together)), ctx.Queue()
        procs = [
            ctx.Process(target=_contend, args=(Contender(*defaults[k], device, seconds), barrier, results))
            for k in together
        ]
        for p in procs:
            p.start()
        got = dict(results.get(timeout=900) for _ in procs)
        for p in procs:
            p.join()
        for kind, stats in got.items():
            out.setdefault(kind, {})["together" if len(together) == 2 else "alone"] = stats
    for both in out.values():
        both["slowdown"] = round(both["together"]["median_ms"] / both["alone"]["median_ms"], 2)
    return out


def _default_models(tiny: bool) -> dict[str, str]:
    """The models the services load by default (tiny: their tiny stand-ins)."""
    if tiny:
        return {"stt": "tiny-stt", "tts": "tiny-tts"}
    settings = {"stt": SttSettings, "tts": TtsSettings}
    return {kind: cls.model_fields["model"].default.split("/")[-1] for kind, cls in settings.items()}


# ---- report -------------------------------------------------------------------------------


def _largest_real_time(rows: list[StepStats]) -> int | None:
    fits = [r.batch for r in rows if r.real_time]
    return max(fits) if fits else None


def _pair(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{a} / {b}"


def _table(rows: list[StepStats]) -> str:
    tts = all(isinstance(r, TtsStats) for r in rows)
    head = (
        "| batch | median step (ms) | p99 step (ms) | GPU busy median / p99 (ms) | peak GPU memory (GiB) "
        "| real time (p99 < 80 ms) |"
    )
    sep = "|---:|---:|---:|---:|---:|:---|"
    if tts:
        head += " first audio, all starting together (ms) | steps |"
        sep += "---:|---:|"
    lines = [head, sep]
    for r in rows:
        cells = [str(r.batch)]
        if r.error:
            cells += [r.error, "", "", "", ""] + (["", ""] if tts else [])
        else:
            cells += [
                str(r.median_ms),
                str(r.p99_ms),
                _pair(r.gpu_median_ms, r.gpu_p99_ms),
                "-" if r.peak_gib is None else str(r.peak_gib),
                "yes" if r.real_time else "no",
            ]
            if isinstance(r, TtsStats):
                cells += [str(r.first_audio_ms), str(r.first_audio_steps)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _under_load_table(rows: list[TtsStats]) -> list[str]:
    measured = [r for r in rows if r.under_load]
    if not measured:
        return []
    budget = measured[0].under_load["catchup_ms"] if measured[0].under_load else None
    lines = [
        "First audio under load: slot 0 starts a new stream (its whole text at once) while the other "
        "B-1 slots speak; words to first audio.",
        "",
        f"| batch | catch-up off: p50 / p95 (ms) | steps "
        f"| catch-up on ({budget} ms a step): p50 / p95 (ms) | steps |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in measured:
        off, on = r.under_load["off"], r.under_load["on"]  # type: ignore[index]
        lines.append(
            f"| {r.batch} | {off['p50_ms']} / {off['p95_ms']} | {off['steps']} "
            f"| {on['p50_ms']} / {on['p95_ms']} | {on['steps']} |"
        )
    return [*lines, ""]


def _parts_table(rows: list[TtsStats]) -> list[str]:
    measured = [r for r in rows if r.parts_ms]
    if not measured:
        return []
    parts = [*TTS_PARTS, "rest"]
    lines = [
        "Where a step goes, every slot speaking (mean ms; each part bracketed by device syncs, "
        "so the step is a little longer than above; rest = host work, sampling, small kernels):",
        "",
        "| batch | step | " + " | ".join(parts) + " |",
        "|---:|---:|" + "---:|" * len(parts),
    ]
    for r in measured:
        assert r.parts_ms is not None
        lines.append(
            f"| {r.batch} | {r.parts_ms['step']} | " + " | ".join(str(r.parts_ms[p]) for p in parts) + " |"
        )
    return [*lines, ""]


def report(result: dict[str, Any]) -> str:
    parts = [f"# GPU capacity ({result['device']})", "", f"`{result['command']}`; {result['software']}", ""]
    for kind in ("stt", "tts"):
        for name, rows in result[kind].items():
            stats = [StepStats(**r) if kind == "stt" else TtsStats(**r) for r in rows]
            best = _largest_real_time(stats)
            parts += [
                f"## {name}",
                "",
                _table(stats),
                "",
                f"Largest real-time batch: **{best if best is not None else 'none'}**.",
                "",
            ]
            if kind == "tts":
                tts = [s for s in stats if isinstance(s, TtsStats)]
                parts += _under_load_table(tts) + _parts_table(tts)
    contention = result.get("contention")
    if contention:
        parts += [
            "## STT and TTS on one device, two processes",
            "",
            "| engine | batch | alone median / p99 (ms) | together median / p99 (ms) | slowdown |",
            "|---|---:|---:|---:|---:|",
        ]
        for kind, c in contention.items():
            a, t = c["alone"], c["together"]
            parts.append(
                f"| {kind} | {a['batch']} | {a['median_ms']} / {a['p99_ms']} | "
                f"{t['median_ms']} / {t['p99_ms']} | {c['slowdown']}x |"
            )
        parts.append("")
    return "\n".join(parts)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="tiny test configs on CPU (checks the script)")
    parser.add_argument("--device", default=None, help="default: cuda, or cpu with --tiny")
    parser.add_argument("--stt-batch", type=int, nargs="+", default=None)
    parser.add_argument("--tts-batch", type=int, nargs="+", default=None)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per batch size")
    parser.add_argument(
        "--first-audio-trials", type=int, default=None, help="TTS streams started under load, per setting"
    )
    parser.add_argument(
        "--tts-catchup-ms",
        type=float,
        default=None,
        help="the TTS engine's catch-up budget (default: the service's)",
    )
    parser.add_argument(
        "--contention-s", type=float, default=None, help="seconds of the contention run (0: skip)"
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON path (Markdown beside it)")
    parser.add_argument(
        "--keep-going", action="store_true", help="measure every batch size, even far past real time"
    )
    return parser.parse_args()


@dataclass(frozen=True)
class Run:
    """What one run measures: the arguments, with the defaults of a GPU run or of --tiny."""

    tiny: bool
    device: str
    stt_batches: list[int]
    tts_batches: list[int]
    steps: int
    warmup: int
    trials: int
    catchup_ms: float | None
    contention_s: float
    keep_going: bool
    out: Path

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Run:
        tiny = args.tiny

        def pick(given: Any, tiny_default: Any, gpu_default: Any) -> Any:
            return given or (tiny_default if tiny else gpu_default)

        return cls(
            tiny=tiny,
            device=pick(args.device, "cpu", "cuda"),
            stt_batches=pick(args.stt_batch, [1, 8, 32], [1, 8, 32, 64, 128, 256, 512]),
            tts_batches=pick(args.tts_batch, [1, 4], [1, 4, 16, 32, 64, 128]),
            steps=pick(args.steps, 10, 100),
            warmup=5 if tiny else 20,
            trials=pick(args.first_audio_trials, 3, 10),
            catchup_ms=args.tts_catchup_ms,
            contention_s=args.contention_s if args.contention_s is not None else (3.0 if tiny else 20.0),
            keep_going=args.keep_going,
            out=pick(args.out, RESULTS / "gpu_capacity-tiny.json", RESULTS / "gpu_capacity.json"),
        )


def measure_model(model: Model, run: Run) -> list[StepStats]:
    """Its step times at each batch size, up to the first that errs or is far past real time."""
    rows: list[StepStats] = []
    for batch in run.stt_batches if model.kind == "stt" else run.tts_batches:
        if model.kind == "stt":
            stats = measure_stt(model, batch, run.device, run.steps, run.warmup)
        else:
            stats = measure_tts(
                model, batch, run.device, run.steps, run.warmup, trials=run.trials, catchup_ms=run.catchup_ms
            )
        print(f"{model.name} batch {batch}: {stats}", flush=True)
        rows.append(stats)
        if stats.error or (not run.keep_going and (stats.p99_ms or 0) > 4 * REAL_TIME_MS):
            break  # larger batches only get slower: save the GPU's time
    return rows


def measure_all(run: Run, result: dict[str, Any]) -> None:
    """Every model's rows into `result`, then the default models side by side (contention)."""
    default_names = _default_models(run.tiny)
    with tempfile.TemporaryDirectory() as tmp:
        defaults: dict[str, tuple[Model, int]] = {}
        for model in models(run.tiny, Path(tmp)):
            rows = measure_model(model, run)
            result[model.kind][model.name] = [asdict(r) for r in rows]
            if model.name == default_names[model.kind] and any(not r.error for r in rows):
                defaults[model.kind] = (model, _largest_real_time(rows) or 1)
        result["real_time_batch"] = {kind: batch for kind, (_, batch) in defaults.items()}
        if run.contention_s > 0 and set(defaults) == {"stt", "tts"}:
            result["contention"] = measure_contention(defaults, run.device, run.contention_s)


def main() -> None:
    run = Run.from_args(parse_args())
    torch.manual_seed(0)
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name()
        if run.device.startswith("cuda")
        else f"CPU ({platform.processor() or platform.machine()})",
        "software": f"torch {torch.__version__}, moshi {moshi.__version__}, "
        f"Python {platform.python_version()}",
        "command": " ".join(["python", "bench/gpu_capacity.py", *sys.argv[1:]]),
        "stt": {},
        "tts": {},
    }
    measure_all(run, result)
    run.out.parent.mkdir(parents=True, exist_ok=True)
    run.out.write_text(json.dumps(result, indent=2) + "\n")
    markdown = report(result)
    run.out.with_suffix(".md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
