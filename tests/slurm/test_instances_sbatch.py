"""The real batch script under a real single-node SLURM (tests/slurm/start_slurm.sh), with
RUNTIME=host and the lite engines: start, serve, cancel, time limit, taken port, failure."""

from __future__ import annotations

import os
import re
import shutil
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests.deployment.suite import run_deployment_suite
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "slurm/instances.sbatch"

pytestmark = [
    pytest.mark.lite,
    pytest.mark.skipif(
        shutil.which("sbatch") is None, reason="no SLURM here (tests/slurm/start_slurm.sh sets one up)"
    ),
]


def node_ready() -> bool:
    out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, check=False).stdout
    return bool(re.search(r"^(idle|mix)", out, re.M))


@pytest.fixture(scope="module", autouse=True)
def slurm():
    if not node_ready():
        pytest.fail("SLURM is installed but its node is not idle: run tests/slurm/start_slurm.sh")


class Job:
    """One submission of the batch script."""

    def __init__(self, workdir: Path, **settings: str) -> None:
        self.workdir = workdir
        self.ports = {name: free_port() for name in ("STT_PORT", "LLM_PORT", "TTS_PORT", "ORCHESTRATOR_PORT")}
        env_file = workdir / "job-settings.env"
        lines = {**self.ports, "STT_ENGINE": "sphinx", "TTS_ENGINE": "espeak", "LLM_URL": "echo", **settings}
        env_file.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
        self.env_file = env_file

    def submit(self, *sbatch_args: str, **env: str) -> None:
        exports = {
            "RUNTIME": "host",
            "UNMUTE_DIR": str(ROOT),
            "ENV_FILE": str(self.env_file),
            "JOB_DIR": str(self.workdir / "job"),
            "READY_TIMEOUT_S": "120",
            **env,
        }
        export = "ALL," + ",".join(f"{k}={v}" for k, v in exports.items())
        result = subprocess.run(
            [
                "sbatch",
                "--parsable",
                "--cpus-per-task=1",
                "--mem=1G",
                f"--export={export}",
                *sbatch_args,
                str(SCRIPT),
            ],
            cwd=self.workdir,
            capture_output=True,
            text=True,
            check=True,
        )
        self.id = result.stdout.strip().split(";")[0]
        self.output = self.workdir / f"unmute-{self.id}.out"

    def text(self) -> str:
        return self.output.read_text() if self.output.exists() else ""

    def wait_output(self, pattern: str, timeout_s: float = 180) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            match = re.search(pattern, self.text())
            if match:
                return match
            time.sleep(0.5)
        raise AssertionError(f"job {self.id}: no {pattern!r} in its output:\n{self.text()}")

    def state(self) -> str:
        out = subprocess.run(
            ["scontrol", "show", "job", self.id], capture_output=True, text=True, check=False
        ).stdout
        return re.search(r"JobState=(\S+)", out).group(1) if "JobState" in out else "GONE"

    def exit_code(self) -> str:
        out = subprocess.run(
            ["scontrol", "show", "job", self.id], capture_output=True, text=True, check=False
        ).stdout
        return re.search(r"ExitCode=(\S+)", out).group(1)

    def wait_end(self, timeout_s: float = 120) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = self.state()
            if state not in ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING"):
                return state
            time.sleep(0.5)
        raise AssertionError(f"job {self.id} still {self.state()}:\n{self.text()}")

    def processes(self) -> list[str]:
        """Service processes of this job still alive (their env file lives in its job dir)."""
        found = []
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    if str(self.workdir / "job") in os.readlink(proc / "cwd"):
                        found.append((proc / "cmdline").read_text().replace("\0", " "))
                except OSError:
                    continue
        return found

    def port_in_use(self, port: int) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    def cancel(self) -> None:
        subprocess.run(["scancel", self.id], check=False)


def test_job_passes_the_deployment_suite_then_scancel_stops_everything(tmp_path):
    job = Job(tmp_path)
    job.submit()
    try:
        url = job.wait_output(r"open  (http://localhost:\d+/\?token=(\S+))")
        tunnel = job.wait_output(r"ssh -N -L (\d+):(\S+):(\d+) ")
        token = url.group(2)
        port = job.ports["ORCHESTRATOR_PORT"]
        assert tunnel.group(1) == tunnel.group(3) == str(port)
        assert stat.S_IMODE(job.output.stat().st_mode) == 0o600  # the token is in there
        job_env = job.workdir / "job" / "job.env"
        assert f"ACCESS_TOKEN={token}\n" in job_env.read_text()  # the printed URL opens this job
        # The suite a user runs against their own job (README), against this one.
        run_deployment_suite(job_env)
        assert job.processes(), "the services run inside the job directory"
    finally:
        job.cancel()
    assert job.wait_end() == "CANCELLED"
    job.wait_output("all services stopped", 30)
    assert job.processes() == []
    assert not any(job.port_in_use(p) for name, p in job.ports.items() if name != "LLM_PORT")


def test_a_taken_port_is_replaced(tmp_path):
    job = Job(tmp_path)
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
    job = Job(tmp_path, STT_ENGINE="moshi", STT_MODEL=str(tmp_path / "no-such-model"))
    job.submit()
    assert job.wait_end(180) == "FAILED"
    text = job.text()
    assert "stt exited while starting" in text and "no-such-model" in text  # the log tail names the cause
    assert "stt failed to start" in text and job.exit_code().startswith("1:")
    assert job.processes() == []


def test_time_limit_shuts_down_through_the_signal(tmp_path):
    job = Job(tmp_path)
    # One minute limit; TERM 50 s before it (SLURM may send it up to 60 s early).
    job.submit("--time=1", "--signal=B:TERM@50")
    job.wait_output("got a stop signal", 120)
    job.wait_end(120)
    job.wait_output("all services stopped|stopping \\(exit status 143\\)", 30)
    assert job.processes() == []
