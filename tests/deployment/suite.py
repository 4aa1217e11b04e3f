"""Run the deployment suite from another test, as a user would run it from a shell."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_deployment_suite(env_file: Path, ca: Path | None = None) -> None:
    """tests/deployment against the deployment `env_file` describes, in its own pytest run;
    `ca`: its orchestrator serves HTTPS/WSS with a certificate this file trusts."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/deployment",
            "--deployment-env",
            str(env_file),
            *(["--deployment-ca", str(ca)] if ca else []),
            "-p",
            "no:cacheprovider",
            "-q",
            "--no-header",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"deployment suite failed:\n{result.stdout[-6000:]}{result.stderr[-2000:]}"
    assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-2000:]
