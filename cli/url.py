"""`unmute url [JOB]`: the URL to open, with the job's token (printed to its owner only, as
the job's own output does); how to reach it goes to stderr."""

from __future__ import annotations

import argparse

from cli.display import connect_text, stderr
from cli.errors import CliError
from cli.job import Job
from cli.project import job_command


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = job_command(commands, "url", "the URL of a ready job, with its access token")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    job = Job.chosen(args.job)
    phase = job.phase
    if phase != "ready":
        hint = f"`unmute status {job.id}`" if phase in ("queued", "starting") else f"`unmute logs {job.id}`"
        raise CliError(f"job {job.id} is {phase}, not ready: {hint}")
    url = job.url_with_token()
    if url is None:
        raise CliError(f"job {job.id} is ready but its {job.dir.path}/job.env has no ACCESS_TOKEN")
    print(url)
    stderr(connect_text(job))
    return 0
