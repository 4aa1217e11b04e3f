"""Run a third-party client's driver in `.venv-clients` against a stack and read its report.

Pipecat and LiveKit need aiohttp>=3.14 and moshi pins aiohttp<3.12, so they live in their
own virtualenv (`make clients`, from tests/thirdparty/requirements.txt) and run as a
subprocess; the tests here start the stack, run the driver, and assert on its JSON report.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import Stack

REPO = Path(__file__).resolve().parents[2]
CLIENTS_PYTHON = REPO / ".venv-clients" / "bin" / "python"
# Long enough, and slow enough (12 s of LLM), that every reply is still running when the
# driver interrupts it, however loaded the machine is.
LONG_REPLY = " ".join(f"Sentence {n} of a long and winding answer, told slowly." for n in range(1, 9))
TOKEN_DELAY_S = 0.15
DRIVER_TIMEOUT_S = 120  # a safety net: every step of a driver has its own 20 s deadline


def run_driver(
    name: str, stack: Stack, workdir: Path, script: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Run `tests.thirdparty.<name>_driver` against `stack`, the scripted LLM set to `script`
    (by default a long, slow reply); its report, once every step passed."""
    assert CLIENTS_PYTHON.exists(), f"{CLIENTS_PYTHON} is missing: `make clients` creates it"
    out = workdir / f"{name}.json"
    args = ["--url", stack.orchestrator.ws, "--token", stack.token, "--out", str(out)]
    args += ["--llm", stack.llm.http]
    stack.script(**(script or {"reply": LONG_REPLY, "token_delay_s": TOKEN_DELAY_S}))
    try:
        proc = subprocess.run(
            [str(CLIENTS_PYTHON), "-m", f"tests.thirdparty.{name}_driver", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=DRIVER_TIMEOUT_S,
            check=False,
        )
    finally:
        stack.script()  # back to the short default reply for the tests that share the stack
    report = json.loads(out.read_text()) if out.exists() else {"failed_step": "no report"}
    context = f"{name} report: {json.dumps(report, indent=2)}\ndriver output:\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, context
    assert report["failed_step"] is None, context
    assert report["errors"] == [], context
    return report
