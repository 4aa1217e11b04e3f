#!/usr/bin/env python3
"""The GPU placement plan of one node: which instance of STT, TTS and vLLM runs on which GPU.

    python3 slurm/placement.py --gpus 0,1,2,3               # the table a user reads
    python3 slurm/placement.py --gpus 0,1,2,3 --format env  # compose's settings for this plan

`--gpus` is the node's allocation as SLURM hands it to the job (CUDA_VISIBLE_DEVICES); the
plan refers to its GPUs by position (0 = the first allocated GPU) and maps them to those ids.

Defaults (G allocated GPUs, TP = LLM_TENSOR_PARALLEL_SIZE, default 1):
  - vLLM takes the last TP GPUs; the other R = G - TP GPUs go to STT and TTS.
  - R = 0 (G = 1, or TP = G): STT and TTS share vLLM's first GPU, and vLLM takes what they
    leave free (LLM_GPU_MEMORY_UTILIZATION=auto).
  - R = 1: STT and TTS share that GPU; vLLM owns its GPUs (0.90 of each).
  - R >= 2: one STT per 7 GPUs (at least one), a TTS replica on each other GPU. One STT
    (256 streams on an H200) carries 256 conversations; a TTS replica speaks 16 replies at
    once, so six of them cover about a third of those conversations talking at one moment.
  So 1 GPU: all on GPU 0; 2: STT+TTS on 0, vLLM on 1; 4: STT 0, TTS 1 and 2, vLLM 3;
  8: STT 0, TTS 1-6, vLLM 7; 8 with TP=2: STT 0, TTS 1-5, vLLM 6-7.
With an external LLM (--external-llm) every GPU goes to STT and TTS.

Overrides (environment or the job's .env): STT_GPUS and TTS_GPUS (positions, one replica per
listed GPU, e.g. TTS_GPUS=1,2), LLM_GPUS (the positions vLLM spans; TP = their count) and
LLM_TENSOR_PARALLEL_SIZE, LLM_GPU_MEMORY_UTILIZATION (a fraction, or auto).

A plan that cannot fit the allocation exits 2 with one line saying why. The SLURM job plans
with `plan()` (slurm/plan.py), before anything starts. Standard library only: the job runs it
with the node's python3.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: vLLM's share of each GPU it owns alone (the rest: CUDA contexts, NCCL buffers, headroom).
OWNED_GPU_FRACTION = "0.90"
#: One STT replica per this many GPUs left to STT and TTS (see the module docstring).
GPUS_PER_STT = 7
#: GPU memory at a batch, measured on an H200 for the default models (docs/performance.md, "GPU capacity";
#: bench/results/h200-2026-11-28): (GiB at batch 1, GiB per extra slot).
MEASURED_GIB = {
    "kyutai/stt-1b-en_fr": (2.45, (30.3 - 2.45) / 255),
    "kyutai/tts-1.6b-en_fr": (4.1, (6.6 - 4.1) / 15),
}


class PlanError(ValueError):
    """The allocation cannot hold the requested plan."""


@dataclass(frozen=True)
class Instance:
    """One process of the plan."""

    name: str  # stt, tts, tts2, ... llm: also the Apptainer instance's prefix
    service: str  # stt | tts | llm
    gpus: tuple[int, ...]  # positions in the allocation
    memory: str  # what it may take: a fraction for vLLM, an estimate for STT and TTS

    def devices(self, ids: Sequence[str]) -> str:
        """Its CUDA_VISIBLE_DEVICES: the ids SLURM gave at its positions ('' for none)."""
        return ",".join(ids[g] for g in self.gpus)

    @property
    def summary(self) -> str:
        """Its memory share, and vLLM's tensor parallel size, as the plan's table shows them."""
        tp = f", tensor parallel {len(self.gpus)}" if self.service == "llm" else ""
        return f"memory {self.memory}{tp}"


def _positions(value: str, key: str, count: int) -> tuple[int, ...]:
    try:
        positions = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise PlanError(f"{key}={value}: expected GPU positions such as 0,1") from None
    if not positions:
        raise PlanError(f"{key} is empty")
    outside = [p for p in positions if not 0 <= p < count]
    if outside:
        raise PlanError(
            f"{key}={value} names GPU {outside[0]}, but the job has {count} GPU(s) (0-{count - 1}): "
            f"ask for more with --gres=gpu:N or change {key}"
        )
    return positions


def _whole(env: Mapping[str, str], key: str, default: int) -> int:
    value = env.get(key) or str(default)
    try:
        return int(value)
    except ValueError:
        raise PlanError(f"{key}={value}: expected a whole number") from None


def _power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _estimate(env: Mapping[str, str], prefix: str, default_batch: int) -> str:
    """What a replica of STT or TTS may take at its batch size (the measured models), else the batch."""
    model, batch = env.get(f"{prefix}_MODEL", ""), _whole(env, f"{prefix}_BATCH_SIZE", default_batch)
    if model in MEASURED_GIB:
        base, per_slot = MEASURED_GIB[model]
        return f"~{base + per_slot * (batch - 1):.0f} GiB (batch {batch})"
    return f"batch {batch}"


def plan(count: int, env: Mapping[str, str], external_llm: bool) -> list[Instance]:
    """The instances for `count` GPUs and the overrides in `env`; raises PlanError."""
    if count == 0:
        return _without_gpus(external_llm)
    llm_gpus = () if external_llm else _llm_gpus(count, env)
    stt_gpus, tts_gpus = _stt_tts_gpus(count, env, llm_gpus)
    instances = [
        *_replicas("stt", stt_gpus, _estimate(env, "STT", default_batch=256)),
        *_replicas("tts", tts_gpus, _estimate(env, "TTS", default_batch=16)),
    ]
    if llm_gpus:
        instances.append(_llm(llm_gpus, {*stt_gpus, *tts_gpus}, env))
    return instances


def _without_gpus(external_llm: bool) -> list[Instance]:
    if not external_llm:
        raise PlanError("vLLM needs a GPU and this job has none: submit with --gres=gpu:N, or set LLM_URL")
    return [Instance("stt", "stt", (), "CPU"), Instance("tts", "tts", (), "CPU")]


def _llm_gpus(count: int, env: Mapping[str, str]) -> tuple[int, ...]:
    """vLLM's GPUs: LLM_GPUS, else the last LLM_TENSOR_PARALLEL_SIZE; a power of two of them."""
    tp = _whole(env, "LLM_TENSOR_PARALLEL_SIZE", 0)
    if env.get("LLM_GPUS"):
        gpus = _positions(env["LLM_GPUS"], "LLM_GPUS", count)
        if tp and tp != len(gpus):
            raise PlanError(f"LLM_TENSOR_PARALLEL_SIZE={tp} but LLM_GPUS lists {len(gpus)} GPU(s)")
    else:
        tp = tp or 1
        if tp > count:
            raise PlanError(
                f"LLM_TENSOR_PARALLEL_SIZE={tp} needs {tp} GPUs, but the job has {count}: "
                f"submit with --gres=gpu:{tp} or more"
            )
        gpus = tuple(range(count - tp, count))
    if not _power_of_two(len(gpus)):
        raise PlanError(
            f"vLLM's tensor parallel size must be a power of two (it divides the attention "
            f"heads), not {len(gpus)}"
        )
    return gpus


def _stt_tts_gpus(
    count: int, env: Mapping[str, str], llm_gpus: tuple[int, ...]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """STT's and TTS's GPUs: STT_GPUS and TTS_GPUS (one given: the other shares its first),
    else what vLLM leaves (vLLM's first GPU if it leaves none), one STT per GPUS_PER_STT."""
    stt_gpus = _positions(env["STT_GPUS"], "STT_GPUS", count) if env.get("STT_GPUS") else ()
    tts_gpus = _positions(env["TTS_GPUS"], "TTS_GPUS", count) if env.get("TTS_GPUS") else ()
    if stt_gpus or tts_gpus:
        first = (stt_gpus or tts_gpus)[0]
        return stt_gpus or (first,), tts_gpus or (first,)
    rest = tuple(g for g in range(count) if g not in llm_gpus) or llm_gpus[:1]
    if len(rest) == 1:
        return rest, rest
    stt_count = max(1, round(len(rest) / GPUS_PER_STT))
    return rest[:stt_count], rest[stt_count:]


def _llm(gpus: tuple[int, ...], stt_tts_gpus: set[int], env: Mapping[str, str]) -> Instance:
    """vLLM's instance: OWNED_GPU_FRACTION of GPUs it owns, `auto` (what STT and TTS leave) of shared ones."""
    memory = env.get("LLM_GPU_MEMORY_UTILIZATION") or "auto"
    if memory == "auto" and not stt_tts_gpus & set(gpus):
        memory = OWNED_GPU_FRACTION
    return Instance("llm", "llm", gpus, memory)


def _replicas(service: str, gpus: tuple[int, ...], memory: str) -> list[Instance]:
    return [
        Instance(service if i == 0 else f"{service}{i + 1}", service, (gpu,), memory)
        for i, gpu in enumerate(gpus)
    ]


def print_env(instances: list[Instance], ids: list[str]) -> None:
    """The plan as compose's .env settings: one instance per service, on its first listed GPU."""
    for service in ("stt", "tts", "llm"):
        mine = [i for i in instances if i.service == service]
        if not mine:
            continue
        gpus = mine[0].gpus if service == "llm" else (mine[0].gpus[0],)
        print(f"{service.upper()}_GPUS={','.join(ids[g] for g in gpus)}")
        if len(mine) > 1:
            idle = ",".join(ids[i.gpus[0]] for i in mine[1:])
            print(f"# compose runs one {service.upper()}; replicas on GPU {idle} need the SLURM job")
        if service == "llm":
            print(f"LLM_TENSOR_PARALLEL_SIZE={len(gpus)}")
            if mine[0].memory != "auto":
                print(f"LLM_GPU_MEMORY_UTILIZATION={mine[0].memory}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--gpus", default="", help="the node's GPU ids, comma-separated (CUDA_VISIBLE_DEVICES)"
    )
    parser.add_argument("--external-llm", action="store_true", help="the LLM runs elsewhere (LLM_URL)")
    parser.add_argument(
        "--format",
        choices=("table", "env"),
        default="table",
        help="table: for people; env: compose's settings for this plan",
    )
    args = parser.parse_args()
    ids = [part for part in args.gpus.split(",") if part.strip()]
    try:
        instances = plan(len(ids), os.environ, args.external_llm)
    except PlanError as exc:
        print(f"placement: {exc}", file=sys.stderr)
        sys.exit(2)
    if args.format == "env":
        print_env(instances, ids)
        return
    for instance in instances:
        shown = instance.devices(ids) or "(none)"
        print(f"  {instance.name:<6} CUDA_VISIBLE_DEVICES={shown:<10} {instance.summary}")


if __name__ == "__main__":
    main()
