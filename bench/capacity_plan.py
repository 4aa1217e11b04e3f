"""Sessions per node, per GPU count and per node count, computed from a measured GPU run.

    python bench/capacity_plan.py                       # the table in docs/performance.md
    python bench/capacity_plan.py --talk-fraction 0.5   # an assistant that talks half the time

Nothing here is measured: it combines what was (`bench/gpu_capacity.py`'s step times, first
audio and memory on an H200, `bench/orchestrator_overhead.py`'s CPU per session-second) with
the SLURM job's placement plan (`slurm/placement.py`) for each GPU count. A session holds one
STT stream while it is open and one TTS slot while the assistant speaks; `--talk-fraction` (an
assumption, not a measurement) is the share of open sessions hearing a reply at one moment.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
#: The H200 run whose STT and TTS batches the defaults come from (docs/performance.md, "GPU capacity").
MEASURED = ROOT / "bench/results/h200-2026-11-28/run1/gpu_capacity.json"
FRAME_MS = 80.0
GPU_GIB = 143771 / 1024  # the H200's memory as nvidia-smi reported it in that run
LLM_WEIGHTS_GIB = 12.2e9 * 2 / 2**30  # gemma-3-12b-it in bf16
KV_MIB_PER_TOKEN = 0.375  # 48 layers x 8 KV heads x 256 dims x K and V x bf16 (docs/slurm.md)
HEADROOM_GIB = 4.0  # what the job's `auto` leaves free beside STT and TTS


def load_placement() -> ModuleType:
    """slurm/placement.py (a script, not a package module): the job's own plan."""
    spec = importlib.util.spec_from_file_location("placement", ROOT / "slurm/placement.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["placement"] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def measured_row(rows: list[dict], batch: int) -> dict:
    found = [r for r in rows if r["batch"] == batch and not r.get("error")]
    if not found:
        raise SystemExit(f"no measured batch {batch} in {MEASURED}")
    return found[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=MEASURED)
    parser.add_argument("--stt-model", default="stt-1b-en_fr")
    parser.add_argument("--stt-batch", type=int, default=256, help="STT_BATCH_SIZE")
    parser.add_argument("--tts-batch", type=int, default=16, help="TTS_BATCH_SIZE")
    parser.add_argument("--talk-fraction", type=float, default=1 / 3)
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument(
        "--cpu-ms-per-session-s", type=float, default=6.01, help="bench/orchestrator_overhead.py"
    )
    parser.add_argument("--sessions-per-worker", type=int, default=128, help="ORCHESTRATOR_MAX_SESSIONS")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/capacity_plan.md")
    args = parser.parse_args()

    data = json.loads(args.results.read_text())
    stt = measured_row(data["stt"][args.stt_model], args.stt_batch)
    tts = measured_row(data["tts"]["tts-1.6b-en_fr"], args.tts_batch)
    shared = data["contention"]
    placement = load_placement()
    lines = [
        f"Measured ({args.results.relative_to(ROOT)}, {data['device']}): {args.stt_model} batch "
        f"{args.stt_batch} step p99 {stt['p99_ms']} ms alone ({stt['peak_gib']} GiB); tts-1.6b-en_fr "
        f"batch {args.tts_batch} p99 {tts['p99_ms']} ms, first audio {tts['first_audio_ms']:.0f} ms alone; "
        f"on one GPU together (STT {shared['stt']['together']['batch']} + "
        f"TTS {shared['tts']['together']['batch']}) STT p99 {shared['stt']['together']['p99_ms']} ms, "
        f"TTS {shared['tts']['slowdown']}x slower.",
        f"Assumed: {args.talk_fraction:.2f} of open sessions hear a reply at one moment.",
        "",
        "| GPUs per node | plan (slurm/placement.py) | open sessions (STT streams) "
        "| replies at once (TTS slots) | sessions at that talk share | vLLM KV cache (tokens) | basis |",
        "|---:|---|---:|---:|---:|---:|---|",
    ]
    per_node = {}
    for count in args.gpus:
        instances = placement.plan(count, {}, external_llm=False)
        stt_n = sum(i.service == "stt" for i in instances)
        tts_n = sum(i.service == "tts" for i in instances)
        llm = next(i for i in instances if i.service == "llm")
        open_sessions = stt_n * args.stt_batch
        replies = tts_n * args.tts_batch
        sessions = min(open_sessions, math.floor(replies / args.talk_fraction))
        per_node[count] = sessions
        if llm.memory == "auto":
            fraction = (GPU_GIB - stt["peak_gib"] - tts["peak_gib"] - HEADROOM_GIB) / GPU_GIB
        else:
            fraction = float(llm.memory)
        kv_gib = fraction * GPU_GIB * len(llm.gpus) - LLM_WEIGHTS_GIB
        tokens = kv_gib * 1024 / KV_MIB_PER_TOKEN
        layout = ", ".join(f"{i.name} {'+'.join(map(str, i.gpus))}" for i in instances)
        basis = (
            "STT and TTS measured on one GPU together"
            if count == 1
            else "each service's step measured alone on its own GPU; several GPUs not run"
        )
        cells = (count, layout, open_sessions, replies, sessions, f"{tokens / 1000:.0f}k", basis)
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    lines += [
        "",
        "| nodes | "
        + " | ".join(
            f"{g} GPU{'s' if g > 1 else ''}/node: sessions, orchestrator cores, workers" for g in args.gpus
        )
        + " |",
        "|---:|" + "---:|" * len(args.gpus),
    ]
    for nodes in args.nodes:
        cells = []
        for count in args.gpus:
            sessions = per_node[count] * nodes
            cores = sessions * args.cpu_ms_per_session_s / 1000
            workers = math.ceil(sessions / args.sessions_per_worker)
            cells.append(f"{sessions}, {cores:.1f}, {workers}")
        lines.append(f"| {nodes} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
