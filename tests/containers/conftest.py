"""Fixtures the container tests share: the project's Docker daemon with the service images,
and one readable copy of the tiny checkpoints' HF cache for every container that mounts it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.containers.engine import SERVICE_IMAGES, image, readable_copy, require_engine


@pytest.fixture(scope="session")
def service_images() -> None:
    """The daemon runs and the stt, tts and orchestrator images exist (else fail as root)."""
    require_engine(*map(image, SERVICE_IMAGES))


@pytest.fixture(scope="session")
def hf_cache(tiny) -> Iterator[Path]:
    """The tiny checkpoints' cache where the images' uid 1000 can read it."""
    with readable_copy(tiny.hf_home, "unmute-hf-") as path:
        yield path
