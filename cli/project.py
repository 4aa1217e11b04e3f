"""Where the project, its settings and its job directories are, and the pointer to the
user's latest job (the command's only state of its own)."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cli.errors import CliError

BATCH_SCRIPT = Path("slurm/instances.sbatch")


@dataclass(frozen=True)
class Project:
    """A checkout of the project: the batch script, the user's settings file, where jobs go."""

    root: Path

    @classmethod
    def find(cls) -> Project:
        """UNMUTE_DIR, else the checkout this package is in; fails naming the setting."""
        root = Path(os.environ.get("UNMUTE_DIR") or Path(__file__).resolve().parents[1])
        if not (root / BATCH_SCRIPT).is_file():
            raise CliError(f"no {BATCH_SCRIPT} in {root}: set UNMUTE_DIR to your unmute-slurm checkout")
        return cls(root)

    @property
    def batch_script(self) -> Path:
        return self.root / BATCH_SCRIPT

    @property
    def jobs_dir(self) -> Path:
        """Where the batch script puts job directories (its UNMUTE_JOBS_DIR)."""
        return Path(os.environ.get("UNMUTE_JOBS_DIR") or self.root / "build/jobs")

    def job_dir(self, job_id: str) -> Path:
        """The job's directory: as the pointer recorded it for the latest job, else the default."""
        latest = read_latest()
        if latest is not None and latest.job_id == job_id:
            return latest.job_dir
        return self.jobs_dir / job_id

    @property
    def settings_file(self) -> Path:
        """The settings the job reads: ENV_FILE, else .env, else .env.example (as the batch script)."""
        given = os.environ.get("ENV_FILE")
        if given:
            return Path(given)
        env = self.root / ".env"
        return env if env.is_file() else self.root / ".env.example"

    def setting(self, key: str) -> str:
        """A setting as the job sees it: the environment first, then the settings file."""
        if os.environ.get(key):
            return os.environ[key]
        value = ""
        try:
            for line in self.settings_file.read_text().splitlines():
                if line.startswith(f"{key}="):
                    value = line.split("=", 1)[1]
        except OSError:
            pass
        return value


@dataclass(frozen=True)
class Latest:
    """The user's latest job, as `unmute up` submitted it."""

    job_id: str
    job_dir: Path


def state_file() -> Path:
    """XDG_STATE_HOME/unmute-slurm/latest-job (XDG_STATE_HOME defaults to ~/.local/state)."""
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local/state"
    return Path(state) / "unmute-slurm/latest-job"


def read_latest() -> Latest | None:
    """The pointer to the latest job, or None if there is none (or it is unreadable)."""
    try:
        data = json.loads(state_file().read_text())
        return Latest(str(data["job_id"]), Path(data["job_dir"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_latest(job_id: str, job_dir: Path) -> None:
    """Point at this job for the commands that are given none."""
    path = state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"job_id": job_id, "job_dir": str(job_dir)}) + "\n")


def resolve_job(given: str | None) -> str:
    """The job a command acts on: the one given, else the latest `unmute up` submitted."""
    if given:
        if not given.isdigit():
            raise CliError(f"'{given}' is not a job id (a number, as `unmute status` lists them)")
        return given
    latest = read_latest()
    if latest is None:
        raise CliError("no job given and none started with `unmute up` yet: name one (see `unmute status`)")
    return latest.job_id


def job_command(commands: argparse._SubParsersAction, name: str, summary: str) -> argparse.ArgumentParser:
    """A subcommand that acts on one job, by default the latest `unmute up` started."""
    parser = commands.add_parser(name, help=summary)
    parser.add_argument("job", nargs="?", help="a job id (default: the latest `unmute up` started)")
    return parser
