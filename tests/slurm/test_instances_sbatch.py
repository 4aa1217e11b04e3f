"""The real batch script under a real single-node SLURM (tests/slurm/start_slurm.sh), with
RUNTIME=host and the lite engines: start, serve, cancel, time limit, taken port, failure."""

from __future__ import annotations

import os
import re
import shutil
import socket
import stat
import subprocess

import pytest

from tests.deployment.suite import run_deployment_suite
from tests.slurm.jobs import HostCluster, Job

pytestmark = pytest.mark.lite


def node_ready() -> bool:
    out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, check=False).stdout
    return bool(re.search(r"^(idle|mix)", out, re.M))


HOST = HostCluster()


@pytest.fixture(scope="module", autouse=True)
def slurm():
    if shutil.which("sbatch") is None:
        # As root `make test` installs SLURM (tests/slurm/start_slurm.sh): missing there is a failure.
        if os.geteuid() == 0:
            pytest.fail("no sbatch although root: tests/slurm/start_slurm.sh installs and starts SLURM")
        pytest.skip("no SLURM here and not root (tests/slurm/start_slurm.sh sets one up as root)")
    if not node_ready():
        pytest.fail("SLURM is installed but its node is not idle: run tests/slurm/start_slurm.sh")


def test_job_passes_the_deployment_suite_then_scancel_stops_everything(tmp_path):
    job = Job(HOST, tmp_path)
    job.submit()
    try:
        url = job.wait_output(r"open  (http://localhost:\d+/\?token=(\S+))")
        tunnel = job.wait_output(r"ssh -N -L (\d+):(\S+):(\d+) ")
        token = url.group(2)
        port = job.ports["ORCHESTRATOR_PORT"]
        assert tunnel.group(1) == tunnel.group(3) == str(port)
        assert stat.S_IMODE(job.output.stat().st_mode) == 0o600  # the token is in there
        assert f"ACCESS_TOKEN={token}\n" in job.env.read_text()  # the printed URL opens this job
        # The suite a user runs against their own job (README), against this one.
        run_deployment_suite(job.env)
        assert job.leftovers(), "the services run inside the job directory"
    finally:
        job.cancel()
    assert job.wait_end() == "CANCELLED"
    job.wait_output("all services stopped", 30)
    assert job.leftovers() == []
    assert job.ports_in_use() == []


def test_a_taken_port_is_replaced(tmp_path):
    job = Job(HOST, tmp_path)
    with socket.socket() as squatter:
        squatter.bind(("0.0.0.0", job.ports["TTS_PORT"]))
        squatter.listen()
        job.submit()
        try:
            moved = job.wait_output(rf"port {job.ports['TTS_PORT']} for tts is taken on \S+; using (\d+)")
            job.wait_output("orchestrator ready")
            assert moved.group(1) != str(job.ports["TTS_PORT"])
        finally:
            job.cancel()
    job.wait_end()


def test_a_service_that_fails_ends_the_job_with_its_log(tmp_path):
    job = Job(HOST, tmp_path, STT_ENGINE="moshi", STT_MODEL=str(tmp_path / "no-such-model"))
    job.submit()
    assert job.wait_end(180) == "FAILED"
    text = job.text()
    assert "stt exited while starting" in text and "no-such-model" in text  # the log tail names the cause
    assert "stt failed to start" in text and job.exit_code().startswith("1:")
    assert job.leftovers() == []


def test_time_limit_shuts_down_through_the_signal(tmp_path):
    job = Job(HOST, tmp_path)
    # One minute limit; TERM 50 s before it (SLURM may send it up to 60 s early).
    job.submit("--time=1", "--signal=B:TERM@50")
    job.wait_output("got a stop signal", 120)
    job.wait_end(120)
    job.wait_output("all services stopped|stopping \\(exit status 143\\)", 30)
    assert job.leftovers() == []


@pytest.mark.skipif(shutil.which("apptainer") is not None, reason="this host has Apptainer")
def test_without_apptainer_the_default_runtime_says_what_to_do(tmp_path):
    job = Job(HOST, tmp_path)
    job.submit(RUNTIME="apptainer")
    assert job.wait_end(60) == "FAILED"
    assert "apptainer not found; load its module or use RUNTIME=host" in job.text()
    assert "starting" not in job.text()
