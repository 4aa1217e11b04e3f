"""The CI's container engine, as the tests use it: the project's Docker daemon
(tests/containers/docker.sh), its images, and a copy of the tiny checkpoints' HF cache that
containers running as another user can read."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKER_SH = ROOT / "tests/containers/docker.sh"
BASE_IMAGE = "localhost/debian-base:bookworm"
SERVICE_IMAGES = ("stt", "tts", "orchestrator")


def image(service: str) -> str:
    """The name compose.yaml gives `service`'s image (docker.sh builds it under that name)."""
    return f"localhost/unmute-slurm/{service}:dev"


def docker(
    *args: str, check: bool = True, timeout: float = 900, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The docker CLI against the project's daemon; a failure raises with its stderr."""
    command = [str(DOCKER_SH), "docker", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, env=env)
    if check and result.returncode != 0:
        failed = f"docker {' '.join(args)} failed ({result.returncode})"
        raise AssertionError(f"{failed}:\n{result.stderr[-3000:]}")
    return result


def require_engine(*images: str) -> None:
    """Fail (as root, where CI installs everything) or skip (elsewhere) unless the daemon
    runs and `images` exist: CI must never skip these tests silently."""
    problem = None
    if docker("info", check=False, timeout=30).returncode != 0:
        problem = f"the project's Docker daemon is not running (`{DOCKER_SH.relative_to(ROOT)} start`)"
    else:
        missing = [name for name in images if docker("image", "inspect", name, check=False).returncode]
        if missing:
            problem = f"images not built: {', '.join(missing)} (`make images` builds them)"
    if problem is None:
        return
    if os.geteuid() == 0:
        pytest.fail(f"{problem}; as root `make test` sets this up, so this is an error")
    pytest.skip(f"{problem}; not root, so `make test` could not set it up")


@contextmanager
def readable_copy(source: Path, prefix: str) -> Iterator[Path]:
    """A copy of a directory (an HF cache, a certificate and key) under a world-readable
    temporary directory (pytest's are 0700), for containers that run as a user other than
    the test's."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        root.chmod(0o755)
        shutil.copytree(source, root / source.name, symlinks=True)
        yield root / source.name
    finally:
        shutil.rmtree(root)
