"""What SLURM knows about a job: submit, look up (scontrol, then sacct), list, cancel."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from cli.errors import CliError

ACTIVE = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING"})
JOB_NAME = "unmute"  # the batch script's --job-name


@dataclass
class SlurmJob:
    """One job as SLURM reports it; `state` is UNKNOWN once SLURM has forgotten the job."""

    id: str
    state: str = "UNKNOWN"
    nodes: list[str] = field(default_factory=list)
    reason: str | None = None
    time_limit_s: int | None = None
    time_left_s: int | None = None
    stdout: Path | None = None
    exit_code: str | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE


def run(args: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """A SLURM command; a missing one is the user's to fix, so it says how."""
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise CliError(
            f"no `{args[0]}` here: run unmute on a login node of the cluster (or load its slurm module)"
        ) from None
    except subprocess.TimeoutExpired:
        raise CliError(f"`{' '.join(args)}` did not answer in {timeout:.0f} s: is SLURM up?") from None


def submit(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    """sbatch ARGS from `cwd`; the new job's id."""
    try:
        result = subprocess.run(
            ["sbatch", "--parsable", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except FileNotFoundError:
        raise CliError(
            "no `sbatch` here: run unmute on a login node of the cluster (or load its slurm module)"
        ) from None
    if result.returncode != 0:
        raise CliError(f"sbatch refused the job: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout.strip().split(";")[0]


def duration_s(text: str) -> int | None:
    """SLURM's [days-]hours:minutes:seconds (or minutes:seconds, or minutes) in seconds;
    None for UNLIMITED, INVALID and other words."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not match:
        return None
    days, first, second, third = match.groups()
    parts = [int(p) for p in (first, second, third) if p is not None]
    if days is not None:
        parts += [0] * (3 - len(parts))  # days-hours[:minutes[:seconds]]
    elif len(parts) == 1:
        parts = [0, parts[0], 0]  # minutes
    elif len(parts) == 2:
        parts = [0, *parts]  # minutes:seconds
    hours, minutes, seconds = parts
    return ((int(days or 0) * 24 + hours) * 60 + minutes) * 60 + seconds


def hostnames(nodelist: str) -> list[str]:
    """A node list (n[1-2]) as names."""
    if not nodelist or nodelist in ("(null)", "None"):
        return []
    expanded = run(["scontrol", "show", "hostnames", nodelist])
    return expanded.stdout.split() if expanded.returncode == 0 else [nodelist]


def show(job_id: str) -> SlurmJob:
    """The job from scontrol (while SLURM remembers it), else from sacct (where accounting is on)."""
    shown = run(["scontrol", "--oneliner", "show", "job", job_id])
    if shown.returncode == 0 and shown.stdout.strip():
        fields = dict(re.findall(r"(\w+)=(\S*)", shown.stdout))
        limit = duration_s(fields.get("TimeLimit", ""))
        used = duration_s(fields.get("RunTime", "")) or 0
        state = fields.get("JobState", "UNKNOWN")
        reason = fields.get("Reason")
        return SlurmJob(
            id=job_id,
            state=state,
            nodes=hostnames(fields.get("NodeList", "")) if state != "PENDING" else [],
            reason=reason if reason and reason != "None" else None,
            time_limit_s=limit,
            time_left_s=max(limit - used, 0) if limit is not None and state in ACTIVE else None,
            stdout=Path(fields["StdOut"]) if fields.get("StdOut") else None,
            exit_code=fields.get("ExitCode"),
        )
    accounted = run(
        [
            "sacct",
            "--jobs",
            job_id,
            "--noheader",
            "--allocations",
            "--parsable2",
            "--format=State,NodeList,ExitCode,Timelimit",
        ]
    )
    line = (
        accounted.stdout.strip().splitlines()[0]
        if accounted.returncode == 0 and accounted.stdout.strip()
        else ""
    )
    if line:
        state, nodelist, exit_code, limit = [*line.split("|"), "", "", ""][:4]
        return SlurmJob(
            id=job_id,
            state=state.split()[0],  # "CANCELLED by 1000"
            nodes=hostnames(nodelist),
            time_limit_s=duration_s(limit),
            exit_code=exit_code or None,
        )
    return SlurmJob(id=job_id)


def my_jobs() -> list[str]:
    """The ids of this user's jobs of this project that SLURM still lists."""
    listed = run(["squeue", "--me", "--noheader", f"--name={JOB_NAME}", "--format=%i"])
    if listed.returncode != 0:
        raise CliError(f"squeue failed: {listed.stderr.strip()}")
    return sorted(listed.stdout.split(), key=int)


def cancel(job_id: str) -> None:
    """scancel the job (its batch script then stops every instance it started)."""
    result = run(["scancel", job_id])
    if result.returncode != 0:
        raise CliError(f"scancel {job_id} failed: {result.stderr.strip()}")
