"""A multi-host SLURM of node containers (tests/slurm/node.sh) on their own Docker network:
`ctl` runs slurmctld and is the submit host, `n1` and `n2` run slurmd with four fake GPUs
each. Every container has its own hostname and address; the network's DNS resolves the
three names; the host reaches them by address. One munge key, one slurm.conf (written by
tests/slurm/start_slurm.sh from the same settings on each), the same user, the repository
read-only and one work directory at the same paths on all three."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import time
from pathlib import Path

from tests.containers.engine import docker
from tests.slurm.jobs import Job
from tests.slurm.node import NodeContainer, remove_labelled, shared_dir, user_dir

LABEL = "io.unmute-slurm.test-cluster"
CONTROLLER = "ctl"
NODES = ("n1", "n2")


class Cluster:
    """The three containers and their network; `run` is the user's shell on the submit host.
    Satisfies tests/slurm/jobs.py's `Cluster`, so `Job(cluster, cluster.workdir(...))` works."""

    def __init__(self) -> None:
        self.network = f"unmute-cluster-{secrets.token_hex(4)}"
        self.dir = shared_dir("unmute-cluster-")
        self.work = user_dir(self.dir / "work")
        self.exports: dict[str, str] = {}
        self.containers = {
            name: NodeContainer(f"{self.network}-{name}", LABEL) for name in (CONTROLLER, *NODES)
        }

    @staticmethod
    def remove_leftovers() -> None:
        """Containers and networks of a run that was killed before its teardown."""
        remove_labelled(LABEL)

    def start(self, timeout_s: float = 120) -> None:
        """The network and the three containers, up to both nodes idle."""
        # Root's alone (the user cannot read it); start_slurm.sh installs it for munged.
        key = self.dir / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o400)
        docker("network", "create", "--label", LABEL, self.network)
        settings = {"SLURMCTLD_HOST": CONTROLLER, "CLUSTER_NODES": ",".join(NODES), "MUNGE_KEY": str(key)}
        for name, container in self.containers.items():
            role = "ctld" if name == CONTROLLER else "node"
            container.launch(
                *("--network", self.network, "--hostname", name, "--network-alias", name),
                mounts=(self.dir,),
                env={**settings, "CLUSTER_ROLE": role},
            )
        deadline = time.monotonic() + timeout_s
        for container in self.containers.values():
            container.wait_ready(deadline)

    def node(self, name: str) -> NodeContainer:
        """The container `name` (ctl, n1 or n2)."""
        return self.containers[name]

    def address(self, name: str) -> str:
        """The IPv4 address of `name` on the cluster's network, which the host reaches."""
        networks = docker("inspect", "--format", "{{json .NetworkSettings.Networks}}", self.node(name).name)
        return json.loads(networks.stdout)[self.network]["IPAddress"]

    def host_address(self) -> str:
        """The host's address on the cluster's network (its gateway): where a job reaches a
        server of the test's, which must listen there or on 0.0.0.0, not on loopback."""
        gateway = docker("network", "inspect", "--format", "{{(index .IPAM.Config 0).Gateway}}", self.network)
        return gateway.stdout.strip()

    def run(
        self,
        args: list[str],
        cwd: Path | None = None,
        timeout: float = 60,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """A command as the user on the submit host (sbatch, srun, squeue, scontrol ...)."""
        return self.node(CONTROLLER).run(args, cwd=cwd, timeout=timeout, env=env)

    def workdir(self, name: str) -> Path:
        """A directory under the shared work directory that the user owns."""
        return user_dir(self.work / name)

    def leftovers(self, job: Job) -> list[str]:
        """The user's processes on the compute nodes, as `node: command line` (the user runs
        nothing else there during a job test)."""
        return [f"{name}: {line}" for name in NODES for line in self.node(name).user_processes()]

    def slurm_log(self) -> str:
        """The end of slurmctld's log and of each slurmd's."""
        return "\n".join(f"== {name}\n{container.slurm_log()}" for name, container in self.containers.items())

    def stop(self) -> None:
        """Remove the containers, the network and the shared directory."""
        for container in self.containers.values():
            container.remove()
        docker("network", "rm", self.network, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
