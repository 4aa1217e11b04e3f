"""`unmute down [JOB]`: cancel the job, then wait until its batch script has stopped every
instance it started, and say so."""

from __future__ import annotations

import argparse
import time

from cli import slurm
from cli.display import say
from cli.errors import CliError
from cli.job import JOB, Job
from cli.project import job_command

# The batch script stops each instance within STOP_TIMEOUT_S (20 s) inside SLURM's KillWait.
STOP_WAIT_S = 300


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = job_command(commands, "down", "stop a job and wait until its services are gone")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    job = Job.chosen(args.job)
    if job.slurm.state == "UNKNOWN" and not job.dir.exists:
        raise CliError(f"SLURM knows no job {job.id} and it has no job directory ({job.dir.path})")
    return stop(job)


def stop(job: Job) -> int:
    """Cancel `job` if it runs, wait for its clean-up; 0 when every instance is gone."""
    if not job.slurm.active:
        return report(job, "already ended")
    was_queued = job.slurm.state == "PENDING"
    slurm.cancel(job.id)
    if was_queued:
        say(f"job {job.id} cancelled before it started")
        return 0
    say(f"stopping job {job.id} ...")
    deadline = time.monotonic() + STOP_WAIT_S
    while True:
        job.refresh()
        finished = not job.slurm.active
        if finished and (job.dir.last("stopped", JOB) or not job.dir.events()):
            return report(job)
        if time.monotonic() > deadline:
            raise CliError(
                f"job {job.id} is still {job.slurm.state} after {STOP_WAIT_S} s; see `unmute logs {job.id}`"
            )
        time.sleep(1)


def report(job: Job, ended: str = "ended") -> int:
    """What the job's clean-up said: 0 when it saw every instance gone."""
    stopped = job.dir.last("stopped", JOB)
    if stopped is None:
        say(f"job {job.id} {ended} {job.slurm.state}; it had started no services")
        return 0
    if stopped.text == "all services stopped":
        say(f"job {job.id} {ended} {job.slurm.state}: all services stopped")
        return 0
    say(f"job {job.id} {ended} {job.slurm.state}, but: {stopped.text}; see `unmute logs {job.id}`")
    return 1
