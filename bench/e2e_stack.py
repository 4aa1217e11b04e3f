"""The whole voice stack on one machine, under load: voice-to-voice latency and every stage.

It starts the real servers as a deployment runs them: the STT and TTS services
(`python -m services.stt` / `services.tts`) on random-weight checkpoints written for the
run, the fake OpenAI-compatible LLM at a set time to first token and per token
(devkit/llm_server.py: vLLM cannot be installed where this runs), and the orchestrator
(`python -m orchestrator`) in front of them. Then bench/loadtest.py's simulated users speak
to it at each user count, and the figures are written as JSON and Markdown.

A step costs the same whatever the weights hold, so the timings are those of the real
models; what the STT transcribes is noise and so is what the TTS says. The full-size STT is
written so that its noise words fall in speech, not in silence (`audio_driven_stt` in
devkit/checkpoints.py), and Silero VAD is a real model, so turns end where the speech
really does.

    python bench/e2e_stack.py --out OUT          # on a GPU: stt-1b-en_fr and tts-1.6b-en_fr sizes
    python bench/e2e_stack.py --out OUT --tiny   # anywhere: tiny models on CPU (CI)

bench/gpu_e2e.sh wraps it for a GPU machine without network.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import platform
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.loadtest import METRICS, run_sessions, summary  # noqa: E402
from devkit.checkpoints import VOICE_NAMES, RandomCheckpoints  # noqa: E402
from devkit.processes import ServiceError, ServiceProcess, launch, stop, wait_ready  # noqa: E402
from devkit.realtime_client import speech  # noqa: E402

logger = logging.getLogger("e2e")
ARCHITECTURES = ROOT / "bench" / "architectures.json"
TINY_VOCAB = 128
# Defaults per mode: (full size on a GPU, tiny on CPU). The GPU batches are the largest
# real-time ones bench/gpu_capacity.py measured on an H200 for STT, and the TTS batch
# whose first audio stayed near 300 ms (bench/results).
PRESETS: dict[str, tuple[Any, Any]] = {
    "users": ([1, 16, 64], [1, 4]),
    "turns": (2, 1),
    "stt_batch": (256, 8),
    "tts_batch": (16, 4),
    "warmup_turns": (1, 0),
    # Independent users do not end their turns together: spread their starts over about
    # one turn (3 s of speech, 2.5 s of silence, the reply played out).
    "stagger_s": (10.0, 2.0),
}
# Service metrics read before and after each user count (services/*/metrics.py).
STEP_HISTOGRAMS = {"stt": "asr_model_step_duration", "tts": "tts_step_duration_seconds"}
REJECTIONS = {"stt": "stt_capacity_rejections_total", "tts": "tts_capacity_rejections_total"}
# What the LLM stand-in says every time. Plain lowercase words and light punctuation: every
# character is in the random-weight checkpoints' tokenizer, and ten words are about three
# seconds of speech.
REPLY = "Sure, here is a short answer, spoken one word at a time for you."


@dataclass
class Stack:
    """Every server started, so that all of them are stopped whatever happens."""

    workdir: Path
    api_key: str
    env: dict[str, str]
    services: dict[str, ServiceProcess] = field(default_factory=dict)

    def start(self, name: str, argv: list[str]) -> ServiceProcess:
        """Run `python argv --port P` in a folder of its own under `workdir` (devkit.processes)."""
        self.services[name] = service = launch(
            name, argv, self.workdir / name, api_key=self.api_key, env=self.env, die_with_parent=True
        )
        return service

    def wait_ready(self, names: list[str], timeout_s: float) -> None:
        """Until these servers' /ready answer 200; `ServiceError` names the first that exits."""
        wait_ready([self.services[n] for n in names], timeout_s)

    def check_alive(self) -> None:
        for service in self.services.values():
            service.check_alive()

    def stop(self) -> None:
        """SIGTERM every process (the orchestrator first), then SIGKILL what is left after 15 s."""
        stop(reversed(self.services.values()), grace_s=15)


# ---- checkpoints --------------------------------------------------------------------------


def build_checkpoints(
    out: Path, tiny: bool, stt_model: str, tts_model: str, device: str
) -> RandomCheckpoints:
    """Random-weight STT and TTS checkpoints: the tiny test sizes, or published architectures."""
    from devkit.checkpoints import (
        build_random_checkpoints,
        tiny_mimi_config,
        tiny_stt_config,
        tiny_tts_config,
    )

    if tiny:
        # No end-of-turn heads: pauses come from Silero VAD, as with stt-1b-en_fr.
        stt = tiny_stt_config(TINY_VOCAB, heads=False, delay_s=0.5, prefix_s=0.0)
        return build_random_checkpoints(
            out, stt, tiny_tts_config(TINY_VOCAB), mimi_config=tiny_mimi_config(), voice_frames=25
        )
    published = json.loads(ARCHITECTURES.read_text())["models"]
    configs = [published[name]["config"] for name in (stt_model, tts_model)]
    return build_random_checkpoints(out, *configs, audio_driven_stt=True, device=device)


def checkpoints_in_child(args: argparse.Namespace, out: Path) -> RandomCheckpoints:
    """Build them in a process of their own, so that none of its memory (GPU memory included)
    stays with this one while the services run."""
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        job = pool.submit(build_checkpoints, out, args.tiny, args.stt_model, args.tts_model, args.device)
        return job.result()


# ---- measuring ----------------------------------------------------------------------------


def scrape(service: ServiceProcess) -> dict[str, float]:
    """The service's step-time sum and count and its capacity rejections, from /metrics.

    A blocking call: it runs between user counts, when no simulated user is waiting on the loop."""
    histogram = STEP_HISTOGRAMS[service.name]
    wanted = {f"{histogram}_sum", f"{histogram}_count", REJECTIONS[service.name]}
    text = httpx.get(f"{service.http}/metrics", timeout=5).text
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name in wanted
    }


def service_figures(stack: Stack, before: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Mean model step and capacity rejections of STT and TTS since `before`."""
    out: dict[str, Any] = {}
    for name in ("stt", "tts"):
        after = scrape(stack.services[name])
        delta = {k: v - before[name].get(k, 0.0) for k, v in after.items()}
        histogram = STEP_HISTOGRAMS[name]
        count = delta.get(f"{histogram}_count", 0.0)
        step_s = delta.get(f"{histogram}_sum", 0.0)
        out[f"{name}_mean_step_ms"] = round(1000 * step_s / count, 2) if count else None
        out[f"{name}_steps"] = int(count)
        out[f"{name}_rejections"] = int(delta.get(REJECTIONS[name], 0.0))
    return out


def gpu_memory_mib(stack: Stack) -> dict[str, int] | None:
    """GPU memory each service process holds (nvidia-smi), or None without nvidia-smi."""
    if shutil.which("nvidia-smi") is None:
        return None
    query = ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"]
    rows = subprocess.run(query, capture_output=True, text=True, check=False).stdout.splitlines()
    used = {int(pid): int(mib) for pid, mib in (r.split(",") for r in rows if r.strip())}
    return {n: used[s.process.pid] for n, s in stack.services.items() if s.process.pid in used}


async def load_levels(stack: Stack, token: str, args: argparse.Namespace, write) -> None:
    """A warm-up session, then each user count in turn; results are written after each."""
    url = f"ws://127.0.0.1:{stack.services['orchestrator'].port}"
    phrase = speech()
    if args.warmup_turns:
        logger.info("warm-up: 1 user, %d turn(s)", args.warmup_turns)
        await run_sessions(url, token, 1, args.warmup_turns, phrase)
    for users in args.users:
        stack.check_alive()
        before = {n: scrape(stack.services[n]) for n in ("stt", "tts")}
        started = time.monotonic()
        logger.info("%d user(s), %d turn(s) each, started over %.1f s", users, args.turns, args.stagger_s)
        results = await run_sessions(url, token, users, args.turns, phrase, stagger_s=args.stagger_s)
        stack.check_alive()
        level = {"users": users, "duration_s": round(time.monotonic() - started, 1)} | summary(results)
        level["services"] = service_figures(stack, before)
        v2v = level["metrics"]["voice_to_voice"]
        logger.info(
            "%d user(s): voice to voice p50 %s / p95 %s ms over %d turns, %d errors",
            *(users, _ms(v2v["p50"]), _ms(v2v["p95"]), v2v["n"], results.errors),
        )
        write(level)


# ---- report -------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def environment(device: str) -> dict[str, Any]:
    """Versions and the machine the figures come from."""
    gpu = None
    if device.startswith("cuda") and shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"]
        gpu = subprocess.run(query, capture_output=True, text=True, check=False).stdout.strip() or None
    versions = {}
    for dist in ("torch", "moshi", "onnxruntime"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "device": device,
        "gpu": gpu,
        "no_torch_compile": os.environ.get("NO_TORCH_COMPILE"),
    } | versions


def markdown(result: dict[str, Any]) -> str:
    """The JSON's figures as a report: turns, voice to voice, every stage, the services' steps."""
    cfg, env, setup = result["config"], result["environment"], result["setup_s"]
    levels = result["levels"]
    models = f"{cfg['stt_model']} + {cfg['tts_model']}, random weights"
    title = "tiny models on CPU" if cfg["tiny"] else models
    lines = [
        f"# Voice stack end to end: {title}",
        "",
        f"`{result['command']}`",
        "",
        f"Device {env['device']}" + (f" ({env['gpu']})" if env["gpu"] else "") + f", {env['cpus']} CPUs, "
        f"Python {env['python']}, torch {env.get('torch', '?')}, moshi {env.get('moshi', '?')}, "
        f"NO_TORCH_COMPILE={env['no_torch_compile']}. STT {cfg['stt_batch']} slots, TTS {cfg['tts_batch']} "
        f"slots; LLM stand-in: {cfg['llm_ttft_ms']:.0f} ms to first token, {cfg['llm_tpot_ms']:.0f} ms per "
        f"token, {cfg['reply_words']} words. Each user speaks {cfg['turns']} turn(s) of 3 s of speech and "
        f"2.5 s of silence and hears the reply out; users start spread over {cfg['stagger_s']:.0f} s. "
        f"Setup {setup['checkpoints']:.0f} s (checkpoints) + {setup['services']:.0f} s (services ready); "
        f"{result['wall_s']:.0f} s in all.",
        "",
        "| users | sessions completed | errors | turns answered | voice to voice p50 (ms) | p95 (ms) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for lv in levels:
        v2v = lv["metrics"]["voice_to_voice"]
        lines.append(
            f"| {lv['users']} | {lv['sessions_ok']}/{lv['users']} | {lv['errors']} | {v2v['n']} | "
            f"{_ms(v2v['p50'])} | {_ms(v2v['p95'])} |"
        )
    lines += [
        "",
        "## Every stage, p50 / p95 in ms (samples)",
        "",
        "Client-side figures are measured by the simulated users; `server:` ones and the LLM and TTS "
        "stages are the orchestrator's own (`unmute_slurm.latency`).",
        "",
        "| metric | " + " | ".join(f"{lv['users']} user{'s' * (lv['users'] > 1)}" for lv in levels) + " |",
        "|---|" + "---:|" * len(levels),
    ]
    for key, label in METRICS.items():
        cells = [lv["metrics"][key] for lv in levels]
        lines.append(
            f"| {label} | "
            + " | ".join(f"{_ms(c['p50'])} / {_ms(c['p95'])} ({c['n']})" for c in cells)
            + " |"
        )
    lines += [
        "",
        "## Services during each user count",
        "",
        "| users | STT mean step (ms) | STT steps | TTS mean step (ms) | TTS steps | STT / TTS rejections |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for lv in levels:
        s = lv["services"]
        lines.append(
            f"| {lv['users']} | {s['stt_mean_step_ms']} | {s['stt_steps']} | {s['tts_mean_step_ms']} | "
            f"{s['tts_steps']} | {s['stt_rejections']} / {s['tts_rejections']} |"
        )
    llm = result.get("llm") or {}
    lines += [
        "",
        f"LLM stand-in: {llm.get('requests')} requests, {llm.get('completed')} completed, "
        f"{llm.get('cancelled')} cancelled.",
    ]
    if result.get("gpu_memory_mib"):
        mem = ", ".join(f"{n} {mib / 1024:.1f} GiB" for n, mib in result["gpu_memory_mib"].items())
        lines.append(f"GPU memory after the last user count (nvidia-smi): {mem}.")
    return "\n".join(lines) + "\n"


# ---- main ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_e2e.json/.md and the logs")
    parser.add_argument("--tiny", action="store_true", help="tiny models on CPU (the CI check)")
    parser.add_argument("--stt-model", default="stt-1b-en_fr", help="a bench/architectures.json entry")
    parser.add_argument("--tts-model", default="tts-1.6b-en_fr", help="a bench/architectures.json entry")
    parser.add_argument("--device", help="where the models run (default: cuda, or cpu with --tiny)")
    parser.add_argument("--users", type=int, nargs="+", help="simulated users per round (1 16 64; tiny: 1 4)")
    parser.add_argument("--turns", type=int, help="turns per user (2; tiny: 1)")
    parser.add_argument("--stagger-s", type=float, help="users' starts spread over this long (10; tiny: 2)")
    parser.add_argument("--warmup-turns", type=int, help="one user's turns before measuring (1; tiny: 0)")
    parser.add_argument("--stt-batch", type=int, help="STT_BATCH_SIZE (256; tiny: 8)")
    parser.add_argument("--tts-batch", type=int, help="TTS_BATCH_SIZE (16, the default TTS batch; tiny: 4)")
    parser.add_argument("--llm-ttft-ms", type=float, default=200.0, help="LLM stand-in: time to first token")
    parser.add_argument("--llm-tpot-ms", type=float, default=25.0, help="LLM stand-in: time per token")
    parser.add_argument("--ready-timeout-s", type=float, default=300.0, help="longest wait for a service")
    args = parser.parse_args(argv)
    for key, (full, tiny) in PRESETS.items():
        if getattr(args, key) is None:
            setattr(args, key, tiny if args.tiny else full)
    args.device = args.device or ("cpu" if args.tiny else "cuda")
    return args


def start_stack(stack: Stack, args: argparse.Namespace, ckpt: RandomCheckpoints) -> None:
    """The LLM stand-in, STT, TTS and the orchestrator (ready once its backends are), all at once."""
    pace = ["--ttft-ms", str(args.llm_ttft_ms), "--tpot-ms", str(args.llm_tpot_ms), "--reply", REPLY]
    llm = stack.start("llm", ["-m", "devkit.llm_server", *pace])
    engine = ["--engine", "moshi", "--device", args.device]
    stt_args = ["--model", str(ckpt.stt_dir), "--batch-size", str(args.stt_batch)]
    stt = stack.start("stt", ["-m", "services.stt", *engine, *stt_args])
    tts_args = ["--model", str(ckpt.tts_dir), "--batch-size", str(args.tts_batch)]
    tts_args += ["--voice-repo", str(ckpt.voices_dir), "--voice", VOICE_NAMES[0]]
    tts = stack.start("tts", ["-m", "services.tts", *engine, *tts_args])
    backends = ["--llm-url", f"{llm.http}/v1", "--stt-url", f"ws://127.0.0.1:{stt.port}"]
    backends += ["--tts-url", f"ws://127.0.0.1:{tts.port}"]
    stack.start("orchestrator", ["-m", "orchestrator", *backends])
    stack.wait_ready(list(stack.services), args.ready_timeout_s)


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Build, start, measure, stop; returns the result (also written to args.out after each step).

    The checkpoints (6 GB at full size) live in a temporary folder removed at the end; the
    services' logs stay in OUT/logs."""
    started = time.monotonic()
    out: Path = args.out
    shutil.rmtree(out / "logs", ignore_errors=True)
    result: dict[str, Any] = {
        "command": command,
        "environment": environment(args.device),
        "config": {
            k: getattr(args, k)
            for k in ("tiny", "stt_model", "tts_model", "llm_ttft_ms", "llm_tpot_ms", *PRESETS)
        }
        | {"reply_words": len(REPLY.split())},
        "setup_s": {},
        "levels": [],
    }
    if args.tiny:
        result["config"] |= {"stt_model": "tiny-stt (no heads: Silero VAD)", "tts_model": "tiny-tts"}

    def write(level: dict[str, Any] | None = None) -> None:
        if level is not None:
            result["levels"].append(level)
        result["wall_s"] = round(time.monotonic() - started, 1)
        (out / "gpu_e2e.json").write_text(json.dumps(result, indent=1) + "\n")
        if result["levels"]:
            (out / "gpu_e2e.md").write_text(markdown(result))

    api_key, token = secrets.token_urlsafe(24), secrets.token_urlsafe(16)
    env = {"ACCESS_TOKEN": token, "LOG_FORMAT": "text", "ORCHESTRATOR_MAX_SESSIONS": str(max(args.users))}
    stack = Stack(out / "logs", api_key, env)
    with tempfile.TemporaryDirectory(prefix="unmute-e2e-models-") as models:
        logger.info("writing random-weight checkpoints (%s)", "tiny" if args.tiny else "full size")
        ckpt = checkpoints_in_child(args, Path(models))
        result["setup_s"]["checkpoints"] = round(time.monotonic() - started, 1)
        try:
            start_stack(stack, args, ckpt)
            setup = result["setup_s"]
            setup["services"] = round(time.monotonic() - started - setup["checkpoints"], 1)
            result["processes"] = {
                n: {"pid": s.process.pid, "port": s.port, "log": str(s.log)}
                for n, s in stack.services.items()
            }
            write()
            asyncio.run(load_levels(stack, token, args, write))
            result["llm"] = httpx.get(f"{stack.services['llm'].http}/stats", timeout=5).json()
            result["gpu_memory_mib"] = gpu_memory_mib(stack) if args.device.startswith("cuda") else None
            write()
        finally:
            stack.stop()
    return result


def main(argv: list[str] | None = None) -> None:
    """CLI: run the stack, print the Markdown report; exit 1 naming the service that failed."""
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="[e2e %(asctime)s] %(message)s",
        datefmt="%H:%M:%S",
        handlers=[logging.StreamHandler(), logging.FileHandler(args.out / "gpu_e2e.log", mode="w")],
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per /ready poll
    # SIGTERM (the wrapper's trap, a job's time limit) unwinds like an error: services stop.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    given = argv if argv is not None else sys.argv[1:]
    # The folder is the reader's own choice: OUT, so that the command reads the same anywhere.
    shown = ["OUT" if i and given[i - 1] == "--out" else a for i, a in enumerate(given)]
    command = shlex.join(["python", "bench/e2e_stack.py", *shown])
    try:
        result = run(args, command)
    except ServiceError as exc:
        logger.error("%s", exc)
        raise SystemExit(1) from None
    print(markdown(result))


if __name__ == "__main__":
    main()
