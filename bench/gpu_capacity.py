"""How many real-time STT and TTS streams one GPU carries, at the real model sizes.

The project's own engines (`MoshiSttEngine`, `MoshiTtsEngine`: the batched step loops the
services run, CUDA graphs and all) are built on random weights with the published
architectures (`bench/architectures.json`, sources inside; Mimi is moshi's own default
config). A step costs the same whatever the weights hold, so step times and memory are
the real ones; what comes out is noise.

    python bench/gpu_capacity.py                  # on a GPU: full sizes, bf16
    python bench/gpu_capacity.py --tiny           # anywhere: the tiny test configs on CPU (CI)

Prints Markdown tables and writes JSON + Markdown to bench/results/ (gpu_capacity[-tiny].*).
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing as mp
import platform
import random
import string
import sys
import tempfile
import time
from copy import deepcopy
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import moshi
import numpy as np
import torch
from moshi.models.loaders import CheckpointInfo

from services.common.audio import FRAME_SECONDS, FRAME_SIZE
from services.common.tiny_checkpoints import (
    lm_kwargs,
    tiny_mimi_config,
    tiny_stt_config,
    tiny_tts_config,
    train_tokenizer,
)
from services.stt.engines.moshi_engine import MoshiSttEngine
from services.stt.settings import SttSettings
from services.tts.engines.base import SlotInput, StreamStart
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
        info = CheckpointInfo(
            moshi_weights=None,  # type: ignore[arg-type]  (None = random init in moshi's loaders)
            mimi_weights=None,  # type: ignore[arg-type]
            tokenizer=tokenizer,
            lm_config=lm_kwargs(config),
            raw_config=config,
            mimi_config=mimi,
            model_type=kind,
            lm_gen_config=config.get("lm_gen_config", {}),
            tts_config=config.get("tts_config", {}),
            stt_config=config.get("stt_config", {}),
            model_id=config.get("model_id", {}),
        )
        voices = _voice(workdir / name / "voices", config) if kind == "tts" else None
        out.append(Model(name, kind, info, voices))
    return out


# ---- engines ------------------------------------------------------------------------------


def stt_engine(model: Model, batch: int, device: str) -> MoshiSttEngine:
    return MoshiSttEngine(model.info, batch, device=device)


def tts_engine(model: Model, batch: int, device: str) -> MoshiTtsEngine:
    assert model.voices is not None
    settings = TtsSettings(  # the service's defaults, not whatever a local .env says
        _env_file=None,
        model=model.name,
        voice_repo=str(model.voices),
        voice=VOICE,
        batch_size=batch,
        device=device,
    )
    return MoshiTtsEngine(settings, model.info)


def _release(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device: str) -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.startswith("cuda") else None


def _stats(batch: int, times: list[float], device: str) -> StepStats:
    ms = 1000 * np.asarray(times)
    return StepStats(
        batch, round(float(np.median(ms)), 2), round(float(np.percentile(ms, 99)), 2), _peak_gib(device)
    )


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
    """Every slot of a TTS engine speaking a long text, all started together."""

    def __init__(self, model: Model, batch: int, device: str) -> None:
        self.engine = tts_engine(model, batch, device)
        self.batch = batch
        self.start()

    def start(self) -> None:
        """New streams in every slot (each slot's state is reset, as for a new client)."""
        words = [Word(w) for w in TEXT.split()]
        voice = self.engine.default_voice
        self.pending = [SlotInput(b, StreamStart(voice), list(words)) for b in range(self.batch)]
        self.steps_to_first_audio: int | None = None
        self.steps = 0

    def step(self) -> bool:
        """One step; True when slot 0 has produced audio by now."""
        result = self.engine.step(self.pending)
        self.pending = []
        self.steps += 1
        if self.steps_to_first_audio is None and result.outputs.get(0) and result.outputs[0].frames:
            self.steps_to_first_audio = self.steps
        return self.steps_to_first_audio is not None


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
        return _stats(batch, _timed_steps(load, steps), device)
    except torch.OutOfMemoryError:
        return StepStats(batch, error="out of memory")
    finally:
        load = None  # drop the engine before the next batch size is built
        _release(device)


@dataclass
class TtsStats(StepStats):
    #: From the step that gave the words to the step that returned slot 0's first audio.
    first_audio_ms: float | None = None
    first_audio_steps: int | None = None


def measure_tts(model: Model, batch: int, device: str, steps: int, warmup: int) -> TtsStats:
    _release(device)
    try:
        load = TtsLoad(model, batch, device)
        # The first steps capture CUDA graphs and run lazy init, as the service's warm-up does;
        # then every slot starts a new stream, and time to first audio is timed from there.
        _timed_steps(load, warmup)
        load.start()
        start = time.perf_counter()
        while not load.step():
            pass
        first_audio_ms = 1000 * (time.perf_counter() - start)
        # Steady state: every slot generating and decoding audio.
        stats = _stats(batch, _timed_steps(load, steps), device)
        return TtsStats(
            **asdict(stats),
            first_audio_ms=round(first_audio_ms, 1),
            first_audio_steps=load.steps_to_first_audio,
        )
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


def _table(rows: list[StepStats], extra: bool = False) -> str:
    head = "| batch | median step (ms) | p99 step (ms) | peak GPU memory (GiB) | real time (p99 < 80 ms) |"
    sep = "|---:|---:|---:|---:|:---|"
    if extra:
        head += " first audio (ms) | steps to first audio |"
        sep += "---:|---:|"
    lines = [head, sep]
    for r in rows:
        if r.error:
            lines.append(f"| {r.batch} | {r.error} | | | |" + (" | |" if extra else ""))
            continue
        line = (
            f"| {r.batch} | {r.median_ms} | {r.p99_ms} | {r.peak_gib if r.peak_gib is not None else '-'} | "
        )
        line += "yes |" if r.real_time else "no |"
        if extra:
            assert isinstance(r, TtsStats)
            line += f" {r.first_audio_ms} | {r.first_audio_steps} |"
        lines.append(line)
    return "\n".join(lines)


def report(result: dict[str, Any]) -> str:
    parts = [f"# GPU capacity ({result['device']})", "", f"`{result['command']}`; {result['software']}", ""]
    for kind in ("stt", "tts"):
        for name, rows in result[kind].items():
            stats = [StepStats(**r) if kind == "stt" else TtsStats(**r) for r in rows]
            best = _largest_real_time(stats)
            parts += [
                f"## {name}",
                "",
                _table(stats, extra=kind == "tts"),
                "",
                f"Largest real-time batch: **{best if best is not None else 'none'}**.",
                "",
            ]
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="tiny test configs on CPU (checks the script)")
    parser.add_argument("--device", default=None, help="default: cuda, or cpu with --tiny")
    parser.add_argument("--stt-batch", type=int, nargs="+", default=None)
    parser.add_argument("--tts-batch", type=int, nargs="+", default=None)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per batch size")
    parser.add_argument(
        "--contention-s", type=float, default=None, help="seconds of the contention run (0: skip)"
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON path (Markdown beside it)")
    parser.add_argument(
        "--keep-going", action="store_true", help="measure every batch size, even far past real time"
    )
    args = parser.parse_args()

    tiny = args.tiny
    device = args.device or ("cpu" if tiny else "cuda")
    stt_batches = args.stt_batch or ([1, 8, 32] if tiny else [1, 8, 32, 64, 128, 256, 512])
    tts_batches = args.tts_batch or ([1, 4] if tiny else [1, 4, 16, 32, 64])
    steps = args.steps or (10 if tiny else 100)
    contention_s = args.contention_s if args.contention_s is not None else (3.0 if tiny else 20.0)
    out = args.out or RESULTS / ("gpu_capacity-tiny.json" if tiny else "gpu_capacity.json")
    torch.manual_seed(0)

    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name()
        if device.startswith("cuda")
        else f"CPU ({platform.processor() or platform.machine()})",
        "software": f"torch {torch.__version__}, moshi {moshi.__version__}, "
        f"Python {platform.python_version()}",
        "command": " ".join(["python", "bench/gpu_capacity.py", *sys.argv[1:]]),
        "stt": {},
        "tts": {},
    }
    default_names = _default_models(tiny)
    with tempfile.TemporaryDirectory() as tmp:
        defaults: dict[str, tuple[Model, int]] = {}
        for model in models(tiny, Path(tmp)):
            rows: list[StepStats] = []
            measure = measure_stt if model.kind == "stt" else measure_tts
            for batch in stt_batches if model.kind == "stt" else tts_batches:
                stats = measure(model, batch, device, steps, warmup=5 if tiny else 20)
                print(f"{model.name} batch {batch}: {stats}", flush=True)
                rows.append(stats)
                if stats.error or (not args.keep_going and (stats.p99_ms or 0) > 4 * REAL_TIME_MS):
                    break  # larger batches only get slower: save the GPU's time
            result[model.kind][model.name] = [asdict(r) for r in rows]
            if model.name == default_names[model.kind]:
                defaults[model.kind] = (model, _largest_real_time(rows) or 1)
        result["real_time_batch"] = {kind: batch for kind, (_, batch) in defaults.items()}
        if contention_s > 0:
            result["contention"] = measure_contention(defaults, device, contention_s)

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    markdown = report(result)
    out.with_suffix(".md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
