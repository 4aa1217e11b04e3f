"""The stt, tts and orchestrator images as tests/containers/docker.sh builds them, each checked
in a fresh container of its own (no compose project): they run as user 1000 with the
project's healthcheck, carry no build tools and only their own server's code, and the model
images load moshi's LM and Mimi from a read-only HF cache with no network at all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devkit.checkpoints import STT_REPO, TTS_REPO
from tests.containers.engine import SERVICE_IMAGES, docker, image

pytestmark = pytest.mark.usefixtures("service_images")

BUILD_TOOLS = ["gcc", "cc", "g++", "c++", "clang", "make", "cmake", "ld", "as", "git"]
# What each image's /app holds: the shared kit and its own server's code, never devkit/ or tests/.
APP_CODE = {"stt": {"kit", "services"}, "tts": {"kit", "services"}, "orchestrator": {"kit", "orchestrator"}}


@pytest.mark.parametrize("service", SERVICE_IMAGES)
def test_image_runs_as_user_1000_with_the_project_healthcheck(service: str) -> None:
    (inspected,) = json.loads(docker("image", "inspect", image(service), timeout=60).stdout)
    assert inspected["Config"]["User"] == "1000"
    assert inspected["Config"]["Healthcheck"]["Test"] == [
        *("CMD", "python", "-m", "kit.healthcheck"),
        *("--service", service, "--timeout", "4"),
    ]


@pytest.mark.parametrize("service", SERVICE_IMAGES)
def test_image_has_no_build_tools(service: str) -> None:
    """A container of the image, as whatever user it runs as, finds no compiler, linker or git."""
    probe = "id -u; for tool in " + " ".join(BUILD_TOOLS) + '; do command -v "$tool" || true; done'
    result = docker(
        *("run", "--rm", "--network", "none", "--entrypoint", "sh", image(service), "-c", probe), timeout=120
    )
    uid, *found = result.stdout.split()
    assert uid == "1000"
    assert found == [], f"build tools in the {service} image: {found}"


@pytest.mark.parametrize("service", SERVICE_IMAGES)
def test_image_holds_only_its_own_code(service: str) -> None:
    """Every file under /app is in the kit or the image's own server: the orchestrator's image
    holds no services/ at all (no STT or TTS engine code), and no image the development kit."""
    listing = docker(
        *("run", "--rm", "--network", "none", "--entrypoint", "find", image(service), "/app", "-type", "f"),
        timeout=120,
    ).stdout.split()
    tops = {Path(path).relative_to("/app").parts[0] for path in listing}
    assert tops == APP_CODE[service], sorted(tops)
    if service == "orchestrator":
        engines = [path for path in listing if path.startswith(("/app/services/stt/", "/app/services/tts/"))]
        assert engines == []
        assert "/app/orchestrator/__main__.py" in listing and "/app/kit/protocol.py" in listing


@pytest.mark.moshi
@pytest.mark.parametrize(("service", "repo"), [("stt", STT_REPO), ("tts", TTS_REPO)])
def test_model_image_loads_moshi_offline(hf_cache: Path, service: str, repo: str) -> None:
    """With no network at all and the image's HF_HUB_OFFLINE=1, the checkpoint's LM and Mimi
    load from the read-only cache."""
    script = "; ".join(
        [
            "import os, torch",
            "from services.common.checkpoint import load_checkpoint_info",
            "assert os.environ['HF_HUB_OFFLINE'] == '1'",
            f"info = load_checkpoint_info({repo!r})",
            "info.get_moshi(device='cpu', dtype=torch.float32), info.get_mimi(device='cpu')",
            "print(info.moshi_weights)",
        ]
    )
    result = docker(
        *("run", "--rm", "--network", "none", "--volume", f"{hf_cache}:/data/hf:ro"),
        *("--entrypoint", "python", image(service), "-c", script),
        timeout=300,
    )
    assert result.stdout.strip().startswith("/data/hf/hub/"), result.stdout
