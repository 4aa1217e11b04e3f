"""A second stop signal during the SLURM job's clean-up (scancel twice, the time limit's TERM
after `--signal`'s, srun passing on a TERM its step also got from SLURM) must not kill the
clean-up halfway: `keep_stopping` in slurm/lib/common.sh, which both the batch script and the
per-node step call first thing in their stop paths."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

# The batch script's shape: traps as in slurm/instances.sbatch's main, a clean-up that takes a
# few seconds (stopping instances), and the watch loop's interruptible wait.
SCRIPT = """
set -euo pipefail
JOB_ID=test NODE=here RUNTIME=host UNMUTE_DIR={root}
source {root}/slurm/lib/common.sh
cleanup() {{
  keep_stopping
  log "stopping"
  for _ in $(seq 30); do sleep 0.1; done
  log "all services stopped"
  exit 0
}}
trap cleanup EXIT
trap 'log "got a stop signal"; exit 143' TERM INT
log "ready"
while true; do sleep 10 & wait $!; done
"""


def _wait_for(path: Path, text: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 20
    while text not in path.read_text():
        assert proc.poll() is None, path.read_text()
        assert time.monotonic() < deadline, path.read_text()
        time.sleep(0.02)


def test_a_second_term_during_the_clean_up_is_logged_and_the_clean_up_finishes(tmp_path):
    out = tmp_path / "job.out"
    with out.open("w") as sink:
        script = SCRIPT.format(root=ROOT)
        proc = subprocess.Popen(["bash", "-c", script], stdout=sink, stderr=subprocess.STDOUT)
    try:
        _wait_for(out, "ready", proc)
        proc.send_signal(signal.SIGTERM)
        _wait_for(out, "stopping", proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, out.read_text()
    finally:
        proc.kill()
    text = out.read_text()
    assert "another stop signal: still stopping" in text and "all services stopped" in text, text


def _function_body(script: Path, name: str) -> list[str]:
    lines = script.read_text().splitlines()
    start = lines.index(f"{name}() {{")
    end = lines.index("}", start)
    body = (line.strip() for line in lines[start + 1 : end])
    return [line for line in body if line and not line.startswith("#")]


def test_the_job_and_the_node_step_keep_stopping_before_anything_else():
    """The test above checks the mechanism; this holds the two real stop paths to it, right after
    they save the exit status (so no clean-up command runs with TERM at its default)."""
    stop_paths = ((ROOT / "slurm/instances.sbatch", "cleanup"), (ROOT / "slurm/node-services", "stop"))
    for script, name in stop_paths:
        body = _function_body(script, name)
        assert body[:2] == ["local status=$?", "keep_stopping"], (script.name, body[:3])
        assert not any(line.startswith("trap -") and "TERM" in line for line in body), script.name
