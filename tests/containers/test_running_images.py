"""The stt, tts and orchestrator images, built by tests/containers/images.sh, run as
compose.yaml runs them (tests/containers/compose_podman.py) with the tiny checkpoints in a
read-only HF cache; the deployment suite (tests/deployment) then runs against them, and the
images themselves are checked: non-root, no build tools, offline."""

from __future__ import annotations

import json
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common.tiny_checkpoints import STT_REPO, TTS_REPO, TTS_VOICES_REPO
from tests.containers.compose_podman import LABEL, ROOT, ComposeProject, Override, compose_services, podman
from tests.deployment.suite import run_deployment_suite
from tests.llm_server import MODEL as SCRIPTED_MODEL
from tests.servers import free_port

SERVICES = ["stt", "tts", "llm", "orchestrator"]
MODEL_IMAGES = ["stt", "tts"]
COMPOSE_SERVICES = compose_services()
BUILD_TOOLS = ["gcc", "cc", "g++", "c++", "clang", "make", "cmake", "ld", "as", "git"]

pytestmark = [
    pytest.mark.moshi,
    pytest.mark.skipif(
        shutil.which("podman") is None, reason="no podman here (as root, `make test` installs it)"
    ),
]


def image(service: str) -> str:
    """The image compose.yaml runs for `service` (tests/containers/images.sh builds it)."""
    return COMPOSE_SERVICES[service]["image"]


@pytest.fixture(scope="module", autouse=True)
def built() -> None:
    missing = [
        s
        for s in ("stt", "tts", "orchestrator")
        if podman("image", "exists", image(s), check=False).returncode
    ]
    if missing:
        pytest.skip(f"images not built: {', '.join(missing)} (`make images` as root builds them)")


@pytest.fixture(scope="module")
def hf_cache(tiny) -> Iterator[Path]:
    """The tiny checkpoints' HF cache, readable by the images' uid 1000 (pytest's tmp is 0700)."""
    root = Path(tempfile.mkdtemp(prefix="unmute-hf-"))
    try:
        root.chmod(0o755)
        shutil.copytree(tiny.hf_home, root / "hf", symlinks=True)
        yield root / "hf"
    finally:
        shutil.rmtree(root)


@pytest.fixture(scope="module")
def env_file(hf_cache: Path) -> Iterator[Path]:
    """The `.env` the containers and the deployment suite share, as a user's would be."""
    settings = {
        "STT_PORT": free_port(),
        "LLM_PORT": free_port(),
        "TTS_PORT": free_port(),
        "ORCHESTRATOR_PORT": free_port(),
        "SERVICE_API_KEY": secrets.token_urlsafe(24),
        "ACCESS_TOKEN": secrets.token_urlsafe(16),
        "LLM_API_KEY": secrets.token_urlsafe(16),
        "LLM_MODEL": SCRIPTED_MODEL,
        "HF_CACHE_DIR": hf_cache,
        "STT_MODEL": STT_REPO,
        "STT_BATCH_SIZE": 2,
        "STT_DEVICE": "cpu",
        "TTS_MODEL": TTS_REPO,
        "TTS_VOICE_REPO": TTS_VOICES_REPO,
        "TTS_VOICE": "tiny/default.wav",
        "TTS_BATCH_SIZE": 2,
        "TTS_DEVICE": "cpu",
        "LOG_FORMAT": "json",
    }
    with tempfile.TemporaryDirectory(prefix="unmute-env-") as directory:
        path = Path(directory) / ".env"
        path.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
        path.chmod(0o600)
        yield path


@pytest.fixture(scope="module")
def stack(env_file: Path) -> Iterator[ComposeProject]:
    """compose.yaml's gpu-profile services (minus the GPU), LLM replaced by the scripted server."""
    ComposeProject.remove_leftovers()
    project = ComposeProject(env_file, run_id=secrets.token_hex(4))
    scripted_llm = Override(
        image=image("orchestrator"),
        entrypoint="python",
        command=["-m", "tests.llm_server", "--host", "0.0.0.0", "--port", "${LLM_PORT}"],
        extra_volumes=[f"{ROOT / 'tests'}:/app/tests:ro"],
    )
    try:
        project.up(SERVICES, {"llm": scripted_llm}, ready_timeout_s=300)
        yield project
    finally:
        project.down()


def test_leftovers_of_a_killed_run_are_removed() -> None:
    """A run killed before its teardown leaves labelled containers and a network behind."""
    podman("network", "create", "unmute-ci-killed")
    podman(
        *("run", "--detach", "--label", f"{LABEL}=killed", "--network", "unmute-ci-killed"),
        *("--entrypoint", "sleep", "localhost/debian-base:bookworm", "600"),
    )
    ComposeProject.remove_leftovers()
    assert podman("ps", "--all", "--quiet", "--filter", f"label={LABEL}").stdout.strip() == ""
    assert "unmute-ci-killed" not in podman("network", "ls", "--format", "{{.Name}}").stdout.split()


def test_every_container_reports_healthy(stack: ComposeProject) -> None:
    assert {service: stack.health_status(service) for service in SERVICES} == dict.fromkeys(
        SERVICES, "healthy"
    )


def test_deployment_suite_passes_against_the_containers(stack: ComposeProject, env_file: Path) -> None:
    run_deployment_suite(env_file)


@pytest.mark.parametrize("service", ["stt", "tts", "orchestrator"])
def test_image_runs_as_non_root_without_build_tools(stack: ComposeProject, service: str) -> None:
    inspected = json.loads(podman("image", "inspect", image(service)).stdout)[0]
    assert inspected["Config"]["User"] == "1000"
    healthcheck = inspected["Healthcheck"]["Test"]  # kept by the docker-format build
    assert healthcheck[-5:] == ["services.common.healthcheck", "--service", service, "--timeout", "4"]
    assert stack.exec(service, "id", "-u").stdout.strip() == "1000"
    probe = "for tool in " + " ".join(BUILD_TOOLS) + '; do command -v "$tool" || true; done'
    found = stack.exec(service, "sh", "-c", probe).stdout.split()
    assert found == [], f"build tools in the {service} image: {found}"


@pytest.mark.parametrize("service", MODEL_IMAGES)
def test_model_images_load_moshi_without_network(stack: ComposeProject, hf_cache: Path, service: str) -> None:
    """A fresh container with no network at all loads the checkpoint's LM and Mimi from the cache."""
    repo = STT_REPO if service == "stt" else TTS_REPO
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
    result = podman(
        *("run", "--rm", "--network", "none", "--volume", f"{hf_cache}:/data/hf:ro"),
        *("--workdir", "/app", "--entrypoint", "python", image(service), "-c", script),
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().startswith("/data/hf/hub/")
    assert stack.exec(service, "printenv", "HF_HUB_OFFLINE").stdout.strip() == "1"
