"""The Apptainer compute node (tests/slurm/node.sh) as a running container: SLURM and
Apptainer inside, the host's network (so the job's ports are the host's, as a tunnel would
see them), the repository at its own path, and a work directory the node's user owns."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.containers.engine import ROOT, docker
from tests.slurm.jobs import SLURM_LOGS, Job

NODE_IMAGE = "localhost/unmute-node:trixie"
LABEL = "io.unmute-slurm.test-node"
USER = "researcher"
UID = 2000
# The host's test SLURM holds 6817/6818 on the same network namespace.
SLURMCTLD_PORT, SLURMD_PORT = 6827, 6828
# Privileged, less the one capability this VM withholds (runc refuses to grant it):
# Apptainer needs user namespaces, mounts and /dev/fuse for unprivileged SIF mounts.
# (`--init` in start(): stopped instances' processes are reparented to PID 1, which must
# reap them, as a real node's init does.)
CONTAINER_RIGHTS = (
    *("--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE", "--device", "/dev/fuse"),
    *("--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined"),
    *("--security-opt", "systempaths=unconfined"),
)


class Node:
    """One running node container; `run` executes as its unprivileged user."""

    def __init__(self) -> None:
        self.name = f"unmute-node-{secrets.token_hex(4)}"
        # Bind-mounted at the same path, so paths mean the same inside and out.
        self.work = Path(tempfile.mkdtemp(prefix="unmute-node-", dir="/var/tmp"))
        self.work.chmod(0o755)
        shutil.chown(self.work, UID, UID)
        self.exports: dict[str, str] = {}

    @staticmethod
    def remove_leftovers() -> None:
        """Containers of a run that was killed before its teardown."""
        names = docker("ps", "--all", "--quiet", "--filter", f"label={LABEL}").stdout.split()
        if names:
            docker("rm", "--force", *names)

    def start(self, timeout_s: float = 120) -> None:
        docker(
            *("run", "--detach", "--init", "--name", self.name, "--label", LABEL, "--network", "host"),
            *CONTAINER_RIGHTS,
            *("--env", f"NODE_USER={USER}", "--env", f"NODE_UID={UID}"),
            *("--env", f"SLURMCTLD_PORT={SLURMCTLD_PORT}", "--env", f"SLURMD_PORT={SLURMD_PORT}"),
            *("--volume", f"{ROOT}:{ROOT}:ro", "--volume", f"{self.work}:{self.work}"),
            *(NODE_IMAGE, str(ROOT / "tests/slurm/node.sh"), "init"),
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            logs = docker("logs", self.name, check=False)
            if "node ready" in logs.stdout + logs.stderr:
                return
            if docker("inspect", "--format", "{{.State.Running}}", self.name).stdout.strip() != "true":
                break
            time.sleep(1)
        raise AssertionError(f"the node did not come up:\n{(logs.stdout + logs.stderr)[-3000:]}")

    def run(
        self,
        args: list[str],
        cwd: Path | None = None,
        timeout: float = 60,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """A command as the node's user (never root: Apptainer refuses root in this VM)."""
        options = ["--user", USER, *(("--workdir", str(cwd)) if cwd else ())]
        options += [f"--env={key}={value}" for key, value in (env or {}).items()]
        return docker("exec", *options, self.name, *args, check=False, timeout=timeout)

    def workdir(self, name: str) -> Path:
        """A directory under the node's work directory that its user owns."""
        path = self.work / name
        path.mkdir()
        shutil.chown(path, UID, UID)
        return path

    def root(self, *args: str) -> subprocess.CompletedProcess[str]:
        return docker("exec", self.name, *args, check=False)

    def user_processes(self) -> list[str]:
        """Everything the node's user still runs (pgrep, run as root, does not list itself)."""
        return self.root("pgrep", "--list-full", "--uid", USER).stdout.splitlines()

    def leftovers(self, job: Job) -> list[str]:
        """The job runs as the node's user, who runs nothing else during a job test."""
        return self.user_processes()

    def instances(self, job: Job) -> list[str]:
        """`apptainer instance list` as the job sees it (its instance state lives in the job dir)."""
        listing = self.run(
            ["env", f"APPTAINER_CONFIGDIR={job.job_dir}/apptainer", "apptainer", "instance", "list"]
        )
        return [line.split()[0] for line in listing.stdout.splitlines()[1:] if line.strip()]

    def slurm_log(self) -> str:
        return self.root("sh", "-c", f"tail -n 15 {SLURM_LOGS}/*.log").stdout

    def stop(self) -> None:
        docker("rm", "--force", self.name, check=False)
        shutil.rmtree(self.work, ignore_errors=True)
