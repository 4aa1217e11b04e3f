"""`unmute status [JOB] [--json]`: a job's state, nodes, time left, instances, backends and
sessions; with no job, every job of the user's that SLURM lists."""

from __future__ import annotations

import argparse

from cli import slurm
from cli.display import duration
from cli.job import Job
from cli.model import JobStatus, StatusReport
from cli.project import Project


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("status", help="where a job (or each of yours) stands")
    parser.add_argument("job", nargs="?", help="a job id (default: all your unmute jobs)")
    parser.add_argument(
        "--json", action="store_true", help="machine-readable (docs/unmute-status.schema.json)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    project = Project.find()
    ids = [args.job] if args.job else slurm.my_jobs()
    report = StatusReport(jobs=[Job.load(project, job_id).status() for job_id in ids])
    if args.json:
        print(report.model_dump_json(indent=2))
    elif not report.jobs:
        print("no unmute jobs of yours in the queue; start one with `unmute up`")
    else:
        print("\n\n".join(describe(job) for job in report.jobs))
    return 0


def describe(job: JobStatus) -> str:
    """A job's status for a person."""
    head = f"job {job.job_id}  {job.state}  {job.phase}"
    if job.nodes:
        head += f"  on {','.join(job.nodes)}"
    if job.phase == "queued" and job.reason:
        head += f"  (waiting: {job.reason})"
    if job.time_left_s is not None:
        head += f"  {duration(job.time_left_s)} left"
    lines = [head]
    if job.url:
        lines.append(f"  url        {job.url}  (`unmute url {job.job_id}` adds the token)")
    if job.instances:
        states = " · ".join(
            f"{i.instance}{'@' + i.node if len(job.nodes) > 1 else ''} {i.state}" for i in job.instances
        )
        lines.append(f"  instances  {states}")
    for kind, backend in (job.backends or {}).items():
        healthy = sum(r.healthy for r in backend.replicas)
        free = [r.free_slots for r in backend.replicas if r.free_slots is not None]
        room = f", {sum(free)} free slots" if free else ""
        extra = " (echo)" if backend.echo else f" ({backend.model})" if backend.model else ""
        state = "ready" if backend.ready else f"DOWN: {backend.detail}"
        lines.append(f"  {kind:<10} {state}, {healthy}/{len(backend.replicas)} replicas healthy{room}{extra}")
    if job.sessions is not None:
        lines.append(f"  sessions   {job.sessions} open of {job.max_sessions}")
    if job.orchestrator_error:
        lines.append(f"  orchestrator unreachable: {job.orchestrator_error}")
    if job.error:
        lines.append(
            f"  error      {job.error}  (`unmute logs {job.job_id} {job.failed_instance or ''}`)".rstrip()
        )
    return "\n".join(lines)
