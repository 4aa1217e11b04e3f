"""`scripts/cpu-demo.sh`: a stop that was asked for (Ctrl-C, SIGTERM) exits 0 and leaves
no service behind; a service that dies on its own still fails the demo."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devkit.processes import free_port

pytestmark = pytest.mark.lite

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Demo:
    proc: subprocess.Popen[str]
    banner: str

    def group(self) -> dict[int, str]:
        """Command lines of the processes still in the demo's process group, by pid."""
        members = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                # Fields after the command name, which may hold spaces: state, ppid, pgrp, ...
                fields = stat.read_text().rpartition(")")[2].split()
                if int(fields[2]) == self.proc.pid:
                    members[int(stat.parent.name)] = (stat.parent / "cmdline").read_text().replace("\0", " ")
            except (FileNotFoundError, ProcessLookupError):
                continue  # it ended while we looked
        return members

    def finish(self) -> tuple[int, str]:
        """The script's exit status and the rest of its output."""
        rest, _ = self.proc.communicate(timeout=60)
        return self.proc.returncode, rest


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    """The demo script, run from a copy of its layout with its own .env on free ports, in its
    own session, until it prints the URL."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "cpu-demo.sh", tmp_path / "scripts")
    dotenv = {
        "STT_PORT": free_port(),
        "TTS_PORT": free_port(),
        "ORCHESTRATOR_PORT": free_port(),
        "ORCHESTRATOR_HOST": "127.0.0.1",
        "SERVICE_API_KEY": "demo-test-key",
        "LLM_URL": "echo",
    }
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in dotenv.items()))
    env = {k: v for k, v in os.environ.items() if k not in dotenv and k != "ACCESS_TOKEN"}
    # As under a terminal: pytest started in the background inherits SIGINT ignored and would
    # pass that on, and bash cannot trap a signal that was ignored when it started. A handled
    # signal is reset to the default in the child.
    ignored_or_not = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(
            ["bash", str(tmp_path / "scripts" / "cpu-demo.sh")],
            env=env | {"PY": sys.executable, "PYTHONPATH": str(ROOT), "READY_TIMEOUT_S": "90"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    finally:
        signal.signal(signal.SIGINT, ignored_or_not)
    banner = ""
    assert proc.stdout is not None
    for line in proc.stdout:
        banner += line
        if "Open http" in line:
            break
    try:
        assert "Open http" in banner, banner
        yield Demo(proc, banner)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c-to-group", "term-to-script"])
def test_a_requested_stop_exits_0_and_stops_every_service(demo: Demo, signum: int) -> None:
    assert len(demo.group()) == 4  # the script and its three services
    if signum == signal.SIGINT:
        os.killpg(demo.proc.pid, signum)
    else:
        demo.proc.send_signal(signum)
    status, output = demo.finish()
    assert status == 0, output
    assert output.rstrip().endswith("demo: stopped"), output
    assert "a service stopped" not in output
    assert demo.group() == {}


def test_a_service_that_dies_fails_the_demo(demo: Demo) -> None:
    tts = next(pid for pid, cmdline in demo.group().items() if "services.tts" in cmdline)
    os.kill(tts, signal.SIGKILL)
    status, output = demo.finish()
    assert status == 1
    assert "demo: a service stopped (exit 137)" in output
    assert "demo: stopped" not in output
    assert demo.group() == {}
