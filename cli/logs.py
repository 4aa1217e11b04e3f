"""`unmute logs [JOB] [NAME] [-f]`: the job's output, or the log of one of its instances
(stt, tts2, orchestrator, ...) or of a node's replicas step; -f follows it."""

from __future__ import annotations

import argparse
import os

from cli.errors import CliError
from cli.job import Job
from cli.project import job_command


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = job_command(commands, "logs", "a job's output, or one service's log")
    parser.add_argument(
        "name", nargs="?", help="an instance (stt, tts, llm, orchestrator, tts2, ...) or a node"
    )
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing what is added")
    parser.add_argument("-n", "--lines", type=int, metavar="N", help="only the last N lines")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.job is not None and not args.job.isdigit() and args.name is None:
        args.job, args.name = None, args.job  # `unmute logs tts`: the latest job's tts
    job = Job.chosen(args.job)
    if args.name is None:
        output = job.output()
        if output is None:
            raise CliError(
                f"job {job.id} has no output file yet (it may still be queued: `unmute status {job.id}`)"
            )
        files = [output]
    else:
        files = job.dir.service_logs(args.name)
        if not files:
            known = ", ".join(job.dir.log_names()) or "none yet"
            raise CliError(f"job {job.id} has no log for '{args.name}' (logs: {known})")
    # tail does what is asked here (the last lines, following a file that grows) well already.
    lines = "+1" if args.lines is None else str(args.lines)
    os.execvp("tail", ["tail", "-n", lines, *(["-F"] if args.follow else []), *map(str, files)])
