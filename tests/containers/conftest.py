"""Fixtures the container tests share: the project's Docker daemon with the service images,
one readable copy of the tiny checkpoints' HF cache for every container that mounts it, and a
user's certificate and key in a TLS_DIR."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.containers.engine import SERVICE_IMAGES, image, readable_copy, require_engine
from tests.tls_pairs import write_pair


@pytest.fixture(scope="session")
def service_images() -> None:
    """The daemon runs and the stt, tts and orchestrator images exist (else fail as root)."""
    require_engine(*map(image, SERVICE_IMAGES))


@pytest.fixture(scope="session")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A user's TLS_DIR: a certificate for 127.0.0.1 and its key, readable by the images' uid 1000."""
    now = datetime.now(UTC)
    source = tmp_path_factory.mktemp("tls")
    write_pair(source, now - timedelta(minutes=5), now + timedelta(days=9))
    source.chmod(0o755)  # the copy keeps the mode; pytest's directories are 0700
    with readable_copy(source, "unmute-tls-") as path:
        yield path


@pytest.fixture(scope="session")
def hf_cache(tiny) -> Iterator[Path]:
    """The tiny checkpoints' cache where the images' uid 1000 can read it."""
    with readable_copy(tiny.hf_home, "unmute-hf-") as path:
        yield path
