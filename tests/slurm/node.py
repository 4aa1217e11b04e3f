"""The Apptainer compute node (tests/slurm/node.sh) as a running container: SLURM and
Apptainer inside, the host's network (so the job's ports are the host's, as a tunnel would
see them), the repository at its own path, and a work directory the node's user owns.
`NodeContainer` is one container of that image, which tests/slurm/cluster.py also runs."""

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
# (`--init` in NodeContainer.launch: stopped instances' processes are reparented to PID 1,
# which must reap them, as a real node's init does.)
CONTAINER_RIGHTS = (
    *("--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE", "--device", "/dev/fuse"),
    *("--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined"),
    *("--security-opt", "systempaths=unconfined"),
)


def shared_dir(prefix: str) -> Path:
    """A new directory under /var/tmp for bind-mounting at its own path, so that paths mean
    the same inside the containers and out."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    path.chmod(0o755)
    return path


def user_dir(path: Path) -> Path:
    """`path`, created and owned by the cluster's user."""
    path.mkdir()
    shutil.chown(path, UID, UID)
    return path


def remove_labelled(label: str) -> None:
    """Containers, then networks, that carry `label`: what a killed run left behind."""
    containers = docker("ps", "--all", "--quiet", "--filter", f"label={label}").stdout.split()
    if containers:
        docker("rm", "--force", *containers)
    networks = docker("network", "ls", "--quiet", "--filter", f"label={label}").stdout.split()
    if networks:
        docker("network", "rm", *networks)


class NodeContainer:
    """One container of the node image running `tests/slurm/node.sh init`: its user, its part
    of a SLURM, commands in it as that user or as root."""

    def __init__(self, name: str, label: str) -> None:
        self.name = name
        self.label = label

    def launch(self, *options: str, mounts: tuple[Path, ...], env: dict[str, str]) -> None:
        """`docker run` it with `options` (its network), the repository read-only and `mounts`
        at their own paths, and `env` for node.sh and start_slurm.sh; returns at once."""
        env = {"NODE_USER": USER, "NODE_UID": str(UID), **env}
        docker(
            *("run", "--detach", "--init", "--name", self.name, "--label", self.label, *options),
            *CONTAINER_RIGHTS,
            *(f"--env={key}={value}" for key, value in env.items()),
            *("--volume", f"{ROOT}:{ROOT}:ro", *(f"--volume={path}:{path}" for path in mounts)),
            *(NODE_IMAGE, str(ROOT / "tests/slurm/node.sh"), "init"),
        )

    def wait_ready(self, deadline: float) -> None:
        """Until node.sh says its part of SLURM is up; fails with its output past `deadline`."""
        while True:
            logs = docker("logs", self.name, check=False)
            if "node ready" in logs.stdout + logs.stderr:
                return
            running = docker("inspect", "--format", "{{.State.Running}}", self.name).stdout.strip() == "true"
            if not running or time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not come up:\n{(logs.stdout + logs.stderr)[-3000:]}")
            time.sleep(0.5)

    def run(
        self,
        args: list[str],
        cwd: Path | None = None,
        timeout: float = 60,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """A command as the user (never root: Apptainer refuses root in this VM)."""
        options = ["--user", USER, *(("--workdir", str(cwd)) if cwd else ())]
        options += [f"--env={key}={value}" for key, value in (env or {}).items()]
        return docker("exec", *options, self.name, *args, check=False, timeout=timeout)

    def root(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A command as root in the container, never raising."""
        return docker("exec", self.name, *args, check=False)

    def user_processes(self) -> list[str]:
        """Everything the user still runs here (pgrep, run as root, does not list itself)."""
        return self.root("pgrep", "--list-full", "--uid", USER).stdout.splitlines()

    def slurm_log(self) -> str:
        """The end of this container's slurmctld and slurmd logs."""
        return self.root("sh", "-c", f"tail -n 15 {SLURM_LOGS}/*.log").stdout

    def remove(self) -> None:
        docker("rm", "--force", self.name, check=False)


class Node(NodeContainer):
    """The single-node cluster: one node container on the host's network, its own
    slurmctld; `run` executes as its unprivileged user."""

    def __init__(self) -> None:
        super().__init__(f"unmute-node-{secrets.token_hex(4)}", LABEL)
        self.work = shared_dir("unmute-node-")
        shutil.chown(self.work, UID, UID)
        self.exports: dict[str, str] = {}

    @staticmethod
    def remove_leftovers() -> None:
        """Containers of a run that was killed before its teardown."""
        remove_labelled(LABEL)

    def start(self, timeout_s: float = 120) -> None:
        """The container, up to an idle node."""
        ports = {"SLURMCTLD_PORT": str(SLURMCTLD_PORT), "SLURMD_PORT": str(SLURMD_PORT)}
        self.launch("--network", "host", mounts=(self.work,), env=ports)
        self.wait_ready(time.monotonic() + timeout_s)

    def workdir(self, name: str) -> Path:
        """A directory under the node's work directory that its user owns."""
        return user_dir(self.work / name)

    def leftovers(self, job: Job) -> list[str]:
        """The job runs as the node's user, who runs nothing else during a job test."""
        return self.user_processes()

    def instances(self, job: Job) -> list[str]:
        """`apptainer instance list` as the job sees it (its instance state lives in the job dir)."""
        listing = self.run(
            ["env", f"APPTAINER_CONFIGDIR={job.job_dir}/apptainer", "apptainer", "instance", "list"]
        )
        return [line.split()[0] for line in listing.stdout.splitlines()[1:] if line.strip()]

    def stop(self) -> None:
        self.remove()
        shutil.rmtree(self.work, ignore_errors=True)
