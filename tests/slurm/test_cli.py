"""The `unmute` command as a researcher uses it, in a terminal, against the host's test SLURM
(RUNTIME=host, the lite engines, the echo LLM): up, status (and --json against its schema),
url, logs, talking in Chromium through the printed URL, down; a failing service; Ctrl-C while
waiting; errors that name the fix. The first test saves its terminal session to
artifacts/unmute-session.txt, which the docs quote."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from devkit.processes import free_port
from tests.browser.conftest import browser_page  # noqa: F401 (a fixture)
from tests.slurm.jobs import ROOT, processes_in, require_host_slurm
from tests.terminal import Terminal

pytestmark = pytest.mark.lite

SCHEMA = ROOT / "docs/unmute-status.schema.json"
ARTIFACTS = ROOT / "artifacts"
# The test cluster's node has 2 CPUs and 8 GB: the job's own request (16 CPUs, 96G) is lowered
# the way a user passes any sbatch option.
SMALL = ("--", "--cpus-per-task=1", "--mem=1G")


@pytest.fixture(scope="module", autouse=True)
def slurm() -> None:
    require_host_slurm()


def unmute_on_path(bin_dir: Path) -> None:
    """`unmute` as installed by `pip install -e .` (pyproject's console script), run from
    this checkout whatever the virtual environment was installed from."""
    bin_dir.mkdir()
    installed = Path(sys.executable).parent / "unmute"
    script = bin_dir / "unmute"
    if installed.exists():
        script.symlink_to(installed)
    else:  # a checkout whose venv was installed before the console script existed
        script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m cli "$@"\n')
        script.chmod(0o755)


@pytest.fixture
def terminal(tmp_path: Path) -> Terminal:
    """A user's shell: `unmute` on PATH, RUNTIME=host, a settings file with free ports and the
    lite engines, job directories and the latest-job pointer under this test's directory."""
    unmute_on_path(tmp_path / "bin")
    settings = tmp_path / "unmute.env"
    ports = {name: free_port() for name in ("STT_PORT", "LLM_PORT", "TTS_PORT", "ORCHESTRATOR_PORT")}
    lines = {**ports, "STT_ENGINE": "whisper", "TTS_ENGINE": "piper", "LLM_URL": "echo"}
    lines["PYTHONPATH"] = str(ROOT)  # this checkout's services, whichever checkout the venv is of
    settings.write_text("".join(f"{key}={value}\n" for key, value in lines.items()))
    env = {
        "PATH": f"{tmp_path / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "HOME": str(tmp_path),
        "USER": "researcher",
        "TERM": "dumb",
        "LANG": "C.UTF-8",
        "RUNTIME": "host",
        "ENV_FILE": str(settings),
        "UNMUTE_JOBS_DIR": str(tmp_path / "jobs"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "READY_TIMEOUT_S": "120",
        "LOGIN_HOST": "login.cluster.example",
    }
    return Terminal(env, tmp_path)


def job_dir(terminal: Terminal, job_id: str) -> Path:
    return Path(terminal.env["UNMUTE_JOBS_DIR"]) / job_id


def status_json(terminal: Terminal, job_id: str, tmp_path: Path) -> dict:
    """`unmute status JOB --json`, checked against the documented schema by check-jsonschema."""
    result = subprocess.run(
        ["unmute", "status", job_id, "--json"], env=terminal.env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    document = tmp_path / f"status-{job_id}.json"
    document.write_text(result.stdout)
    checker = Path(sys.executable).parent / "check-jsonschema"
    command = [str(checker), "--schemafile", str(SCHEMA), str(document)]
    checked = subprocess.run(command, capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    (report,) = json.loads(result.stdout)["jobs"]
    return report


def save_transcript(terminal: Terminal, name: str, secrets: list[str]) -> Path:
    """The session as the terminal showed it, each secret replaced by <token>."""
    text = terminal.text()
    for secret in secrets:
        text = text.replace(secret, "<token>")
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    path.write_text(text)
    return path


async def test_up_to_talking_and_back_to_down(terminal: Terminal, browser_page, tmp_path: Path) -> None:  # noqa: F811
    up = terminal.start("unmute", "up", *SMALL)
    job_id = up.expect(r"submitted job (\d+)").group(1)
    for step in ("queued|running", "starting stt", "stt ready", "starting tts", "starting orchestrator"):
        up.expect(step)
    url = up.expect(r"then open\n +(http://localhost:(\d+)/\?token=(\S+))")
    assert up.wait() == 0, up.output
    link, port, token = url.groups()
    assert f"ssh -N -L {port}:" in up.output and "@login.cluster.example" in up.output

    status, text = terminal.run("unmute", "status")
    assert status == 0 and f"job {job_id}  RUNNING  ready" in text, text
    report = status_json(terminal, job_id, tmp_path)
    assert report["phase"] == "ready" and report["state"] == "RUNNING"
    assert {i["instance"]: i["state"] for i in report["instances"]} == {
        "stt": "ready",
        "tts": "ready",
        "orchestrator": "ready",
    }
    assert all(report["backends"][kind]["ready"] for kind in ("stt", "tts", "llm")), report
    assert report["backends"]["llm"]["echo"] is True and report["sessions"] == 0
    assert token not in json.dumps(report)  # the token stays in the job's mode-600 files

    status, printed = terminal.run("unmute", "url")
    assert status == 0 and printed.splitlines()[0] == f"http://{report['nodes'][0]}:{port}/?token={token}"

    # Talking: the printed URL (the tunnel's end; on the test cluster the node is this host).
    page = await browser_page()
    await page.goto(link)
    await page.wait_for_selector("#status li.ready[data-service=llm]")
    await page.click("#talk")
    await page.wait_for_selector(".turn.assistant:not(.pending)", timeout=60_000)
    assert (await page.inner_text(".turn.assistant")).strip()  # the echo of what it heard
    status, text = terminal.run("unmute", "status")
    assert "sessions   1 open of" in text, text
    await page.click("#talk")  # Stop: the user hangs up

    status, text = terminal.run("unmute", "logs", "orchestrator", "-n", "3")
    assert status == 0 and text.strip(), text
    status, text = terminal.run("unmute", "down", timeout_s=300)
    assert status == 0 and f"job {job_id} ended CANCELLED: all services stopped" in text, text
    assert processes_in(job_dir(terminal, job_id)) == []
    saved = save_transcript(terminal, "unmute-session.txt", [token])
    assert "$ unmute down" in saved.read_text()


def test_a_failing_service_is_named_with_the_end_of_its_log(terminal: Terminal, tmp_path: Path) -> None:
    settings = Path(terminal.env["ENV_FILE"])
    settings.write_text(settings.read_text() + f"STT_ENGINE=moshi\nSTT_MODEL={tmp_path / 'no-such-model'}\n")
    status, text = terminal.run("unmute", "up", *SMALL, timeout_s=300)
    job_id = re.search(r"submitted job (\d+)", text).group(1)
    assert status == 1, text
    assert f"job {job_id} ended FAILED: stt failed to start" in text, text
    assert f"last lines of {job_dir(terminal, job_id)}/logs/stt.log" in text
    assert "no-such-model" in text.split("last lines of")[1]  # the log's own words on the cause
    report = status_json(terminal, job_id, tmp_path)
    assert report["phase"] == "ended" and report["failed_instance"] == "stt", report
    assert report["error"] == "stt failed to start"
    assert processes_in(job_dir(terminal, job_id)) == []


def test_ctrl_c_while_waiting_asks_and_cancels_the_job(terminal: Terminal) -> None:
    up = terminal.start("unmute", "up", *SMALL)
    job_id = up.expect(r"submitted job (\d+)").group(1)
    up.expect("starting stt")
    up.type("\x03")
    up.expect(rf"Cancel job {job_id} too\? \[y/N\]")
    up.type("y\n")
    assert up.wait(300) == 130, up.output
    assert f"job {job_id} ended CANCELLED: all services stopped" in up.output
    assert processes_in(job_dir(terminal, job_id)) == []


def test_errors_name_the_fix(terminal: Terminal, tmp_path: Path) -> None:
    status, text = terminal.run("unmute", "url")
    assert status == 1 and "none started with `unmute up` yet" in text, text
    terminal.env |= {"RUNTIME": "apptainer", "SIF_DIR": str(tmp_path / "no-sifs")}
    status, text = terminal.run("unmute", "up")
    assert status == 1, text
    assert f"no SIFs (stt.sif, tts.sif, orchestrator.sif missing in {tmp_path / 'no-sifs'}): " in text
    assert "run `slurm/build stt tts orchestrator`" in text
    assert "submitted" not in text  # nothing was queued
    terminal.env |= {"PATH": str(tmp_path / "bin"), "RUNTIME": "host"}  # a machine without SLURM
    status, text = terminal.run("unmute", "up")
    assert status == 1 and "no `sbatch` here: run unmute on a login node" in text, text
