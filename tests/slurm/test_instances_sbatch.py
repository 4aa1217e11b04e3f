"""The real batch script under a real single-node SLURM (tests/slurm/start_slurm.sh), with
RUNTIME=host and the lite engines: start, serve, cancel, time limit, taken port, failure."""

from __future__ import annotations

import hashlib
import re
import shutil
import socket
import ssl
import stat
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.deployment.suite import run_deployment_suite
from tests.slurm.jobs import HostCluster, Job, require_host_slurm
from tests.tls_pairs import write_pair

pytestmark = pytest.mark.lite


HOST = HostCluster()


@pytest.fixture(scope="module", autouse=True)
def slurm():
    require_host_slurm()


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
        # The suite a user runs against their own job (docs/testing.md), against this one.
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


# ---- GPUs: the test SLURM's node has four fake GPUs (tests/slurm/start_slurm.sh) ----------


def job_settings(job: Job) -> dict[str, str]:
    return dict(line.split("=", 1) for line in job.env.read_text().splitlines() if "=" in line)


def plan_rows(text: str) -> dict[str, str]:
    """instance -> CUDA_VISIBLE_DEVICES, from the plan the job printed."""
    return dict(re.findall(r"^  (\w+) +CUDA_VISIBLE_DEVICES=(\S+)", text, re.M))


def test_the_placement_plan_over_four_gpus_and_the_vllm_command_it_would_run(tmp_path):
    job = Job(HOST, tmp_path, LLM_URL="", LLM_MODEL="google/gemma-3-27b-it", LLM_TENSOR_PARALLEL_SIZE="2")
    job.submit("--gres=gpu:4", DRY_RUN="1")
    assert job.wait_end(60) == "COMPLETED", job.text()
    text = job.text()
    assert plan_rows(text) == {"stt": "0", "tts": "1", "llm": "2,3"}
    vllm = re.search(r"vllm command: (.*)", text)
    assert vllm, text
    assert vllm.group(1) == (
        "CUDA_VISIBLE_DEVICES=2,3 vllm serve google/gemma-3-27b-it --host 127.0.0.1 "
        f"--port {job.ports['LLM_PORT']} --tensor-parallel-size 2 --gpu-memory-utilization 0.90 "
        "--max-model-len 8192 --limit-mm-per-prompt '{\"image\": 0}' --enable-auto-tool-choice "
        "--tool-call-parser pythonic --chat-template /opt/unmute/llm/gemma3-tools.jinja"
    )
    assert "DRY_RUN=1: nothing started" in text and "starting" not in text


def test_a_plan_that_does_not_fit_the_gpus_stops_before_anything_starts(tmp_path):
    job = Job(HOST, tmp_path, LLM_URL="", LLM_TENSOR_PARALLEL_SIZE="8")
    job.submit("--gres=gpu:4", DRY_RUN="1")
    assert job.wait_end(60) == "FAILED"
    text = job.text()
    assert "no GPU placement for" in text
    assert "LLM_TENSOR_PARALLEL_SIZE=8 needs 8 GPUs, but the job has 4" in text
    assert "starting" not in text


def test_each_instance_runs_on_the_gpus_of_the_plan(tmp_path):
    job = Job(HOST, tmp_path)  # LLM echo: every GPU goes to STT and TTS
    job.submit("--gres=gpu:4")
    try:
        job.wait_output("orchestrator ready")
        planned = plan_rows(job.text())
        assert sorted(planned) == ["stt", "tts", "tts2", "tts3"]
        assert sorted(",".join(planned.values()).split(",")) == ["0", "1", "2", "3"]
        running = {}
        for command, environ in HOST.service_environments(job):
            port = environ.get("STT_PORT") if "services.stt" in command else environ.get("TTS_PORT")
            if "services.stt" in command or "services.tts" in command:
                running[port] = environ["CUDA_VISIBLE_DEVICES"]
        ports = dict(re.findall(r"^  (\w+) +CUDA_VISIBLE_DEVICES=\S+ +port (\d+)", job.text(), re.M))
        assert running == {ports[name]: planned[name] for name in planned}
        # The orchestrator has every replica; the deployment suite holds a turn through them.
        settings = job_settings(job)
        assert len(settings["TTS_URLS"].split(",")) == 3
        run_deployment_suite(job.env)
    finally:
        job.cancel()
    assert job.wait_end() == "CANCELLED"
    job.wait_output("all services stopped", 30)
    assert job.leftovers() == []


def test_two_jobs_from_one_env_share_a_node_and_scancel_of_one_leaves_the_other(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = Job(HOST, tmp_path / "a")
    second = first.sibling(tmp_path / "b")
    first.submit("--gres=gpu:2")
    second.submit("--gres=gpu:2")  # at once: both choose ports while the other may be choosing
    try:
        for job in (first, second):
            job.wait_output("orchestrator ready")
        assert first.state() == second.state() == "RUNNING"
        a, b = job_settings(first), job_settings(second)
        ports = ("STT_PORT", "TTS_PORT", "ORCHESTRATOR_PORT")
        assert not {a[p] for p in ports} & {b[p] for p in ports}, (a, b)
        # The one that found the .env's ports taken says which it took instead.
        moved = [job for job in (first, second) if "is taken on" in job.text()]
        assert len(moved) == 1
        gpus_a, gpus_b = set(plan_rows(first.text()).values()), set(plan_rows(second.text()).values())
        assert not gpus_a & gpus_b, (gpus_a, gpus_b)
        first.cancel()
        assert first.wait_end() == "CANCELLED"
        first.wait_output("all services stopped", 30)
        assert first.leftovers() == []
        assert second.state() == "RUNNING"
        run_deployment_suite(second.env)
    finally:
        first.cancel()
        second.cancel()
    assert second.wait_end() == "CANCELLED"
    second.wait_output("all services stopped", 30)


# ---- HTTPS ----------------------------------------------------------------------------------


def test_a_self_signed_job_prints_its_fingerprint_and_serves_https(tmp_path):
    job = Job(HOST, tmp_path, ORCHESTRATOR_TLS="self-signed")
    job.submit()
    try:
        url = job.wait_output(r"https://\S+:(\d+)/\?token=(\S+)")
        fingerprint = job.wait_output(r"fingerprint is\n +([0-9A-F:]{95})").group(1)
        port = int(url.group(1))
        assert port == job.ports["ORCHESTRATOR_PORT"]
        served = ssl.get_server_certificate(("127.0.0.1", port))
        digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(served)).hexdigest().upper()
        assert fingerprint == ":".join(digest[i : i + 2] for i in range(0, 64, 2))
        # The certificate names this node, and the UI answers over it with the printed token.
        trust = ssl.create_default_context(cafile=str(job.job_dir / "tls/cert.pem"))
        page = httpx.get(
            f"https://127.0.0.1:{port}/?token={url.group(2)}", verify=trust, timeout=10, follow_redirects=True
        )
        assert page.status_code == 200 and "<html" in page.text.lower()
    finally:
        job.cancel()
    assert job.wait_end() == "CANCELLED"


@pytest.mark.parametrize("problem", ["does not match the key", "expired on"])
def test_a_bad_certificate_stops_the_job_before_anything_starts(tmp_path, problem):
    now = datetime.now(UTC)
    if problem == "expired on":
        cert, key = write_pair(tmp_path / "tls", now - timedelta(days=9), now - timedelta(days=1))
    else:
        cert, _ = write_pair(tmp_path / "tls", now, now + timedelta(days=9))
        _, key = write_pair(tmp_path / "other", now, now + timedelta(days=9))
    job = Job(HOST, tmp_path, ORCHESTRATOR_TLS_CERT_FILE=str(cert), ORCHESTRATOR_TLS_KEY_FILE=str(key))
    job.submit()
    assert job.wait_end(60) == "FAILED"
    text = job.text()
    assert "bad TLS certificate" in text and problem in text, text
    assert "starting" not in text
