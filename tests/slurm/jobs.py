"""Submitting slurm/instances.sbatch and watching it, on either of the tests' clusters: the
host's single-node SLURM (RUNTIME=host) or the Apptainer compute node in a container
(tests/slurm/node.py, RUNTIME=apptainer)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Protocol

import pytest

from devkit.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "slurm/instances.sbatch"
PORT_NAMES = ("STT_PORT", "LLM_PORT", "TTS_PORT", "ORCHESTRATOR_PORT")
ACTIVE = ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING")


class Cluster(Protocol):
    """Where jobs are submitted: how a SLURM command runs there, and what the job leaves."""

    exports: dict[str, str]

    def run(self, args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command as the submitting user, capturing text output, never raising."""
        ...

    def leftovers(self, job: Job) -> list[str]:
        """Command lines of the job's service processes still alive."""
        ...

    def slurm_log(self) -> str:
        """The end of slurmd's and slurmctld's logs, for a failure message."""
        ...


SLURM_LOGS = "/var/tmp/unmute-slurm/log"  # tests/slurm/start_slurm.sh's STATE/log


def processes_in(directory: Path) -> list[tuple[str, dict[str, str]]]:
    """Command line and environment of each process running in `directory` (RUNTIME=host
    starts every service of a job in its job directory)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(directory) in os.readlink(proc / "cwd"):
                    environ = (proc / "environ").read_bytes().decode(errors="replace").split("\0")
                    command = (proc / "cmdline").read_text().replace("\0", " ")
                    found.append((command, dict(item.split("=", 1) for item in environ if "=" in item)))
            except OSError:
                continue
    return found


def require_host_slurm() -> None:
    """The host's test SLURM with an idle node: fails as root (where `make test` starts it,
    tests/slurm/start_slurm.sh), skips elsewhere."""
    if shutil.which("sbatch") is None:
        if os.geteuid() == 0:
            pytest.fail("no sbatch although root: tests/slurm/start_slurm.sh installs and starts SLURM")
        pytest.skip("no SLURM here and not root (tests/slurm/start_slurm.sh sets one up as root)")
    states = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, check=False).stdout
    if not re.search(r"^(idle|mix)", states, re.M):
        pytest.fail("SLURM is installed but its node is not idle: run tests/slurm/start_slurm.sh")


class HostCluster:
    """The host's SLURM (tests/slurm/start_slurm.sh), services from the project's .venv."""

    def __init__(self) -> None:
        self.exports = {"RUNTIME": "host"}

    def run(self, args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)

    def leftovers(self, job: Job) -> list[str]:
        """RUNTIME=host starts every service in the job directory: its cwd gives it away."""
        return [command for command, _environ in processes_in(job.job_dir)]

    def service_environments(self, job: Job) -> list[tuple[str, dict[str, str]]]:
        """Command line and environment of each process the job runs in its directory."""
        return processes_in(job.job_dir)

    def slurm_log(self) -> str:
        return self.run(["sh", "-c", f"tail -n 15 {SLURM_LOGS}/*.log"]).stdout


class Job:
    """One submission of the batch script, with its own settings file, ports and job directory."""

    def __init__(self, cluster: Cluster, workdir: Path, **settings: str) -> None:
        self.cluster = cluster
        self.workdir = workdir
        self.job_dir = workdir / "job"
        self.ports = {name: free_port() for name in PORT_NAMES}
        env_file = workdir / "job-settings.env"
        lines = {**self.ports, "STT_ENGINE": "whisper", "TTS_ENGINE": "piper", "LLM_URL": "echo", **settings}
        env_file.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
        self.env_file = env_file
        self.id = ""

    @classmethod
    def submitted(cls, cluster: Cluster, output_dir: Path, job_id: str, job_dir: Path) -> Job:
        """A job someone else submitted (the `unmute` command): its output file in `output_dir`,
        its job directory at `job_dir`. It has no settings file or ports of the test's."""
        job = cls.__new__(cls)
        job.cluster, job.workdir, job.job_dir = cluster, output_dir, job_dir
        job.ports, job.id = {}, job_id
        return job

    def add_settings(self, **settings: str) -> None:
        """More lines in the job's settings file (the user's .env), before it is submitted."""
        with self.env_file.open("a") as out:
            out.writelines(f"{k}={v}\n" for k, v in settings.items())

    def sibling(self, workdir: Path) -> Job:
        """Another job from this one's settings file (the same .env, so the same ports asked for)."""
        other = Job(self.cluster, workdir)
        other.env_file, other.ports = self.env_file, self.ports
        return other

    def submit(self, *sbatch_args: str, **env: str) -> None:
        """sbatch the script from the job's work directory (its output file lands there)."""
        exports = {
            **self.cluster.exports,
            "UNMUTE_DIR": str(ROOT),
            "ENV_FILE": str(self.env_file),
            "JOB_DIR": str(self.job_dir),
            "READY_TIMEOUT_S": "120",
            **env,
        }
        export = "ALL," + ",".join(f"{k}={v}" for k, v in exports.items())
        args = ["sbatch", "--parsable", "--cpus-per-task=1", "--mem=1G", f"--export={export}"]
        result = self.cluster.run([*args, *sbatch_args, str(SCRIPT)], cwd=self.workdir)
        assert result.returncode == 0, f"sbatch failed: {result.stderr}"
        self.id = result.stdout.strip().split(";")[0]

    @property
    def output(self) -> Path:
        return self.workdir / f"unmute-{self.id}.out"

    @property
    def env(self) -> Path:
        """The job's own env file (ports chosen, fresh secrets): what the deployment suite reads."""
        return self.job_dir / "job.env"

    def text(self) -> str:
        return self.output.read_text() if self.output.exists() else ""

    def wait_output(self, pattern: str, timeout_s: float = 180) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            match = re.search(pattern, self.text())
            if match:
                return match
            time.sleep(0.5)
        raise AssertionError(
            f"job {self.id}: no {pattern!r} in its output:\n{self.text()}\n{self.cluster.slurm_log()}"
        )

    def _show(self) -> str:
        return self.cluster.run(["scontrol", "show", "job", self.id]).stdout

    def state(self) -> str:
        match = re.search(r"JobState=(\S+)", self._show())
        return match.group(1) if match else "GONE"

    def exit_code(self) -> str:
        match = re.search(r"ExitCode=(\S+)", self._show())
        return match.group(1) if match else "?"

    def wait_end(self, timeout_s: float = 120) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = self.state()
            if state not in ACTIVE:
                return state
            time.sleep(0.5)
        raise AssertionError(f"job {self.id} still {self.state()}:\n{self.text()}")

    def leftovers(self) -> list[str]:
        return self.cluster.leftovers(self)

    def ports_in_use(self) -> list[str]:
        """The job's own service ports something still listens on (an external LLM is not the job's)."""
        busy = []
        for name, port in self.ports.items():
            if name == "LLM_PORT":
                continue
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    busy.append(name)
        return busy

    def cancel(self) -> None:
        if self.id:
            self.cluster.run(["scancel", self.id])
