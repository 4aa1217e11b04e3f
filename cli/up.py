"""`unmute up`: submit slurm/instances.sbatch, show its progress until the assistant is
ready (queued, each instance starting and ready), then how to open it. Ctrl-C while waiting
asks whether to cancel the job."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from cli import slurm
from cli.display import connect_text, duration, say
from cli.down import stop
from cli.errors import CliError
from cli.job import JOB, Job
from cli.project import Project, write_latest

POLL_S = 1.0
# After the job said it fails, how long its clean-up may take before the report comes anyway.
FAILING_WAIT_S = 120


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "up",
        help="start the assistant as a SLURM job and wait until it is ready",
        description="Submit slurm/instances.sbatch. Arguments after -- go to sbatch as they are.",
    )
    parser.add_argument("--gpus", type=int, metavar="N", help="GPUs per node (default: the script's, 1)")
    parser.add_argument(
        "--nodes", type=int, metavar="N", help="nodes, each with its own replicas (default 1)"
    )
    parser.add_argument("--time", metavar="T", help="time limit, as sbatch takes it (default 4:00:00)")
    parser.add_argument("--partition", metavar="P")
    parser.add_argument("--account", metavar="A")
    parser.add_argument("--no-wait", action="store_true", help="print the job id and return")
    parser.set_defaults(run=run)


def sbatch_args(args: argparse.Namespace) -> list[str]:
    """The options this command turns into sbatch's, then the user's own after --."""
    given = {
        "--gres": f"gpu:{args.gpus}" if args.gpus is not None else None,
        "--nodes": str(args.nodes) if args.nodes is not None else None,
        "--time": args.time,
        "--partition": args.partition,
        "--account": args.account,
    }
    return [f"{option}={value}" for option, value in given.items() if value is not None] + list(args.sbatch)


def check_images(project: Project) -> None:
    """Before queueing: an Apptainer job needs its SIFs, which are built on a login node."""
    if (os.environ.get("RUNTIME") or "apptainer") != "apptainer":
        return
    sif_dir = os.environ.get("SIF_DIR") or str(project.root / "build/sif")
    images = ["stt", "tts", "orchestrator"] + ([] if project.setting("LLM_URL") else ["vllm"])
    missing = [image for image in images if not os.path.isfile(f"{sif_dir}/{image}.sif")]
    if missing:
        names = ", ".join(f"{image}.sif" for image in missing)
        raise CliError(
            f"no SIFs ({names} missing in {sif_dir}): run `slurm/build {' '.join(missing)}` "
            "(or set SIF_DIR to where they are, or RUNTIME=host to run from .venv)"
        )


def run(args: argparse.Namespace) -> int:
    project = Project.find()
    check_images(project)
    jobs_dir = project.jobs_dir
    jobs_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    # From the checkout, so the job finds it; its output beside the job directories.
    options = [*sbatch_args(args), f"--output={jobs_dir}/unmute-%j.out"]
    environment = {**os.environ, "UNMUTE_DIR": str(project.root)}
    job_id = slurm.submit([*options, str(project.batch_script)], project.root, environment)
    job_dir = Path(os.environ.get("JOB_DIR") or jobs_dir / job_id)  # as the batch script chooses it
    write_latest(job_id, job_dir)
    say(f"submitted job {job_id} (job directory {job_dir})")
    if args.no_wait:
        return 0
    job = Job.load(project, job_id)
    try:
        return wait_ready(job)
    except KeyboardInterrupt:
        return interrupted(job)


def wait_ready(job: Job) -> int:
    """Report progress until the job serves (0) or fails (1, with the failure and its log)."""
    said: set[tuple[object, ...]] = set()

    def once(key: tuple[object, ...], message: str) -> None:
        if key not in said:
            said.add(key)
            say(message)

    failing_since: float | None = None
    unknown_since: float | None = None
    while True:
        job.refresh()
        if job.slurm.state == "UNKNOWN" and not job.dir.last("stopped", JOB):
            # SLURM did not answer (a busy controller), or forgot the job: wait a while.
            unknown_since = unknown_since or time.monotonic()
            if time.monotonic() - unknown_since > FAILING_WAIT_S:
                say(f"SLURM has not known job {job.id} for {FAILING_WAIT_S} s; " + job.failure_report())
                return 1
            time.sleep(POLL_S)
            continue
        unknown_since = None
        if job.slurm.state == "PENDING":
            once(
                ("queued", job.slurm.reason),
                f"job {job.id} queued" + (f" ({job.slurm.reason})" if job.slurm.reason else ""),
            )
        elif job.slurm.active:
            once(("running",), f"job {job.id} running on {', '.join(job.slurm.nodes) or '?'}")
        for event in job.dir.events():
            where = f" on {event.node}" if len(job.slurm.nodes) > 1 else ""
            if event.kind == "starting":
                once(
                    ("starting", event.node, event.subject), f"starting {event.subject}{where} ({event.text})"
                )
            elif event.kind == "ready":
                once(("ready", event.node, event.subject), f"{event.subject}{where} ready ({event.text})")
        phase = job.phase
        if phase == "ready":
            left = f", {duration(job.slurm.time_left_s)} left" if job.slurm.time_left_s is not None else ""
            say(f"ready: job {job.id} on {job.node}{left}\n\n{connect_text(job)}\n")
            say("`unmute status` shows it, `unmute down` stops it")
            return 0
        if phase in ("stopping", "ended"):
            failing_since = failing_since or time.monotonic()
            # The report waits for SLURM's verdict (FAILED, TIMEOUT, ...), which follows the clean-up.
            if not job.slurm.active or time.monotonic() - failing_since > FAILING_WAIT_S:
                say(job.failure_report())
                return 1
        time.sleep(POLL_S)


def interrupted(job: Job) -> int:
    """Ctrl-C while waiting: cancel the job, or leave it running, as the user says."""
    try:
        answer = input(f"\nunmute: stop waiting. Cancel job {job.id} too? [y/N] ")
    except (EOFError, KeyboardInterrupt):
        answer = ""
    if answer.strip().lower() in ("y", "yes"):
        stop(job)
    else:
        say(f"job {job.id} goes on: `unmute status {job.id}` to watch it, `unmute down {job.id}` to stop it")
    return 130
