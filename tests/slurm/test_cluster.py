"""The multi-host test SLURM (tests/slurm/cluster.py): a controller and two compute nodes in
containers on their own network, each node with four fake GPUs."""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.containers.engine import require_engine
from tests.slurm.cluster import NODES, Cluster
from tests.slurm.node import NODE_IMAGE, UID

# A step on n2 serves a file only n2 has (its own /tmp); a step on n1 fetches it by name.
TWO_NODE_JOB = """#!/bin/bash
#SBATCH --nodes=2 --ntasks-per-node=1 --cpus-per-task=1 --time=5
srun --nodes=1 --ntasks=1 --nodelist=n2 bash -c \
  'cd "$(mktemp -d)" && hostname >name && exec python3 -m http.server 8000 --bind "$(hostname -i)"' &
srun --nodes=1 --ntasks=1 --nodelist=n1 python3 -c '
import socket, time, urllib.request
for _ in range(60):
    try:
        served = urllib.request.urlopen("http://n2:8000/name", timeout=5).read().decode().strip()
        break
    except OSError:
        time.sleep(0.5)
print(f"{socket.gethostname()} fetched from {served}")
'
kill %1
"""

# Each job holds two GPUs until it sees the other's file: both must run at once.
GPU_JOB = """
touch "$RENDEZVOUS/$SLURM_JOB_ID"
running() { ls "$RENDEZVOUS" | wc -l; }
for _ in $(seq 1 120); do (($(running) == 2)) && break; sleep 0.5; done
echo "job $SLURM_JOB_ID on $(hostname): CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES running $(running)"
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    require_engine(NODE_IMAGE)
    Cluster.remove_leftovers()
    cluster = Cluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def test_both_nodes_are_idle(cluster: Cluster) -> None:
    states = cluster.run(["sinfo", "--noheader", "--Node", "--format=%N %t %G"])
    assert sorted(states.stdout.split("\n")[:-1]) == [f"{node} idle gpu:4" for node in NODES], states


def test_srun_on_two_nodes_runs_on_each(cluster: Cluster) -> None:
    hostnames = cluster.run(["srun", "--nodes=2", "hostname"], cwd=cluster.work)
    assert hostnames.returncode == 0, hostnames.stderr
    assert sorted(hostnames.stdout.split()) == list(NODES)


def test_a_two_node_jobs_steps_reach_each_other_by_hostname(cluster: Cluster) -> None:
    workdir = cluster.workdir("two-nodes")
    script = workdir / "job.sh"
    script.write_text(TWO_NODE_JOB)
    result = cluster.run(["sbatch", "--wait", "--output=job.out", str(script)], cwd=workdir, timeout=120)
    output = (workdir / "job.out").read_text()
    assert result.returncode == 0, f"{result.stderr}\n{output}\n{cluster.slurm_log()}"
    assert "n1 fetched from n2" in output, output


def test_a_step_reaches_a_server_on_the_host(cluster: Cluster, tmp_path: Path) -> None:
    (tmp_path / "name").write_text("the host\n")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    with ThreadingHTTPServer((cluster.host_address(), 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://{cluster.host_address()}:{server.server_address[1]}/name"
        fetch = f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=10).read().decode())"
        result = cluster.run(["srun", "--nodelist=n2", "python3", "-c", fetch], cwd=cluster.work)
        server.shutdown()
    assert result.stdout == "the host\n\n", result


def test_two_jobs_share_a_node_with_two_gpus_each(cluster: Cluster) -> None:
    rendezvous = cluster.workdir("rendezvous")
    srun = f"srun --nodelist=n1 --cpus-per-task=1 --gres=gpu:2 --export=ALL,RENDEZVOUS={rendezvous} bash -c"
    both = f"{srun} '{GPU_JOB}' & {srun} '{GPU_JOB}' & wait"
    result = cluster.run(["bash", "-c", both], cwd=cluster.work, timeout=120)
    assert result.returncode == 0, f"{result.stderr}\n{cluster.slurm_log()}"
    lines = re.findall(r"on n1: CUDA_VISIBLE_DEVICES=(\S+) running 2$", result.stdout, re.M)
    assert sorted(lines) == ["0,1", "2,3"], result.stdout


def test_the_work_directory_is_shared_by_every_host(cluster: Cluster) -> None:
    written = cluster.node("n1").run(["sh", "-c", "hostname >written-by"], cwd=cluster.work)
    assert written.returncode == 0, written.stderr
    for name in ("ctl", "n2"):
        assert cluster.node(name).run(["cat", "written-by"], cwd=cluster.work).stdout == "n1\n"
    assert (cluster.work / "written-by").stat().st_uid == UID
