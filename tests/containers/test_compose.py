"""compose.yaml, run by Docker Compose v2 the way a user runs it, with only CI's changes
(tests/containers/compose.ci.yaml): each profile comes up healthy on the images docker.sh
built, passes the deployment suite (tests/deployment), and `down` leaves nothing behind.
The two profiles publish the same ports, so they run one after the other."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devkit.checkpoints import STT_REPO, TTS_REPO, TTS_VOICES_REPO
from devkit.llm_server import MODEL as SCRIPTED_MODEL
from devkit.processes import free_port
from tests.containers.engine import (
    BASE_IMAGE,
    ROOT,
    docker,
    image,
)
from tests.deployment.suite import run_deployment_suite

COMPOSE_FILE = ROOT / "compose.yaml"
CI_OVERRIDE = ROOT / "tests/containers/compose.ci.yaml"
PROJECT_LABEL = "com.docker.compose.project"
# Every project these tests start is named so; a run killed before its teardown leaves
# containers, networks and volumes that carry such a project label.
PROJECT_PREFIX = "unmute-ci-"
PROFILES = {"gpu": ["stt", "tts", "llm", "orchestrator"], "cpu": ["stt-cpu", "tts-cpu", "orchestrator-cpu"]}
WAIT_TIMEOUT_S = 240
LOG_TAIL = 40
# How docker lists each kind of a project's resources, and the field that names one.
LISTINGS = {
    "container": (("ps", "--all"), "{{.Names}}"),
    "network": (("network", "ls"), "{{.Name}}"),
    "volume": (("volume", "ls"), "{{.Name}}"),
}

pytestmark = [
    pytest.mark.moshi,
    pytest.mark.timeout(WAIT_TIMEOUT_S + 300),
    pytest.mark.usefixtures("service_images"),
]


def settings(profile: str, hf_cache: Path | None, tls_dir: Path | None = None) -> dict[str, object]:
    """A user's `.env` for `profile`: fresh ports and secrets; gpu adds the moshi engines on
    the tiny checkpoints (CPU, batch 2) and the HF cache that holds them. cpu keeps compose's
    named volume as its cache (the lite engines need no weights) and serves HTTPS with the
    user's certificate and key from `tls_dir`, as .env.example says to."""
    common: dict[str, object] = {
        "STT_PORT": free_port(),
        "LLM_PORT": free_port(),
        "TTS_PORT": free_port(),
        "ORCHESTRATOR_PORT": free_port(),
        "SERVICE_API_KEY": secrets.token_urlsafe(24),
        "ACCESS_TOKEN": secrets.token_urlsafe(16),
        "LLM_API_KEY": secrets.token_urlsafe(16),
        "LLM_MODEL": SCRIPTED_MODEL,
        "LOG_FORMAT": "json",
    }
    if profile == "cpu":
        if tls_dir is None:
            return common
        return common | {
            "TLS_DIR": tls_dir,
            "ORCHESTRATOR_TLS_CERT_FILE": "/run/unmute-tls/cert.pem",
            "ORCHESTRATOR_TLS_KEY_FILE": "/run/unmute-tls/key.pem",
        }
    return common | {
        "HF_CACHE_DIR": hf_cache,
        "STT_MODEL": STT_REPO,
        "STT_BATCH_SIZE": 2,
        "STT_DEVICE": "cpu",
        "TTS_MODEL": TTS_REPO,
        "TTS_VOICE_REPO": TTS_VOICES_REPO,
        "TTS_VOICE": "tiny/default.wav",
        "TTS_BATCH_SIZE": 2,
        "TTS_DEVICE": "cpu",
    }


def write_env_file(path: Path, values: dict[str, object]) -> Path:
    """`values` as KEY=value lines, readable by its owner only (it holds the secrets)."""
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    path.chmod(0o600)
    return path


def compose_environment(env_file: Path) -> dict[str, str]:
    """This process's environment for compose on `env_file`, without what would override it:
    in compose a variable in the shell wins over --env-file, and COMPOSE_* pick files and
    profiles. ENV_FILE hands the same file to the services, as the SLURM job and make do."""
    defined = {line.split("=", 1)[0] for line in env_file.read_text().splitlines()}
    kept = {k: v for k, v in os.environ.items() if k not in defined and not k.startswith("COMPOSE_")}
    return kept | {"ENV_FILE": str(env_file)}


@dataclass
class Project:
    """One compose project: compose.yaml plus CI's override, one profile, one `.env`."""

    name: str
    profile: str
    env_file: Path
    #: The orchestrator serves HTTPS/WSS with this certificate (the user's TLS_DIR/cert.pem).
    tls_cert: Path | None = None

    def compose(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """`docker compose` on this project; its `.env` interpolates compose.yaml (--env-file)
        and is the services' env_file (ENV_FILE)."""
        files = ("-f", str(COMPOSE_FILE), "-f", str(CI_OVERRIDE))
        selection = ("--project-name", self.name, "--env-file", str(self.env_file), "--profile", self.profile)
        environment = compose_environment(self.env_file)
        return docker("compose", *files, *selection, *args, timeout=timeout, check=check, env=environment)

    def up(self) -> None:
        """Start the profile and wait until every service is healthy, or say which one is not."""
        up = (
            "up",
            "--detach",
            "--wait",
            "--wait-timeout",
            str(WAIT_TIMEOUT_S),
            "--pull",
            "never",
            "--no-build",
        )
        try:
            result = self.compose(*up, timeout=WAIT_TIMEOUT_S + 60, check=False)
            failure = None if result.returncode == 0 else f"exit {result.returncode}: {result.stderr[-2000:]}"
        except subprocess.TimeoutExpired as exc:
            failure = f"no answer within {exc.timeout} s"
        if failure is not None:
            raise AssertionError(
                f"`compose up --profile {self.profile}` failed ({failure})\n{self.unhealthy_report()}"
            )

    def health(self) -> dict[str, str]:
        """Each container's service and its health (its state where it has no healthcheck
        result, e.g. `exited`)."""
        listed = self.compose("ps", "--all", "--format", "json").stdout
        containers = [json.loads(line) for line in listed.splitlines() if line.strip()]
        return {c["Service"]: c["Health"] or c["State"] for c in containers}

    def unhealthy_report(self) -> str:
        """Which services are not healthy, and the end of each one's log."""
        health = self.health()
        report = []
        for service in PROFILES[self.profile]:
            state = health.get(service, "never created")
            if state == "healthy":
                continue
            logs = self.compose("logs", "--no-color", "--tail", str(LOG_TAIL), service, check=False)
            report.append(
                f"--- {service}: {state}; its last {LOG_TAIL} log lines:\n{logs.stdout}{logs.stderr}"
            )
        return "\n".join(report) or "every service reports healthy"

    def down(self) -> None:
        """Stop and remove the project's containers, networks and volumes."""
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "10")


def compose_resources(project: Callable[[str], bool]) -> dict[str, list[str]]:
    """The containers, networks and volumes of the compose projects `project` accepts by name."""
    found = {}
    for kind, (listing, name) in LISTINGS.items():
        fields = f'{{{{.Label "{PROJECT_LABEL}"}}}}\t{name}'
        lines = docker(*listing, "--filter", f"label={PROJECT_LABEL}", "--format", fields, timeout=60).stdout
        found[kind] = [
            item for owner, item in (line.split("\t") for line in lines.splitlines()) if project(owner)
        ]
    return found


def remove_leftovers() -> None:
    """Whatever a killed earlier run of these tests left: containers before their networks."""
    leftovers = compose_resources(lambda owner: owner.startswith(PROJECT_PREFIX))
    removals = {
        "container": ("rm", "--force"),
        "network": ("network", "rm"),
        "volume": ("volume", "rm", "--force"),
    }
    for kind, names in leftovers.items():
        if names:
            docker(*removals[kind], *names, timeout=120)


@pytest.fixture(scope="module", params=list(PROFILES))
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """One profile, up and healthy; `down` whatever happens. Parametrized at module scope,
    so pytest takes the gpu stack down before it starts the cpu one."""
    profile = request.param
    hf_cache = request.getfixturevalue("hf_cache") if profile == "gpu" else None
    tls_dir = request.getfixturevalue("tls_dir") if profile == "cpu" else None
    env_file = write_env_file(
        tmp_path_factory.mktemp(f"compose-{profile}") / ".env", settings(profile, hf_cache, tls_dir)
    )
    remove_leftovers()
    project = Project(
        f"{PROJECT_PREFIX}{profile}-{secrets.token_hex(4)}",
        profile,
        env_file,
        tls_cert=tls_dir / "cert.pem" if tls_dir else None,
    )
    try:
        project.up()
        yield project
    finally:
        project.down()


def compose_config(env_file: Path, *files: Path) -> dict[str, Any]:
    """The services compose would run from `files` (both profiles), fully resolved."""
    args = [arg for file in files for arg in ("-f", str(file))]
    result = docker(
        *("compose", *args, "--env-file", str(env_file), "--profile", "gpu", "--profile", "cpu"),
        *("config", "--format", "json"),
        timeout=60,
        env=compose_environment(env_file),
    )
    return json.loads(result.stdout)["services"]


def test_ci_changes_only_the_gpu_the_llm_and_a_read_only_cache(tmp_path: Path) -> None:
    values = settings("gpu", tmp_path / "hf")
    env_file = write_env_file(tmp_path / "ci.env", values)
    users = compose_config(env_file, COMPOSE_FILE)
    ci = compose_config(env_file, COMPOSE_FILE, CI_OVERRIDE)
    assert users.keys() == ci.keys() == {s for services in PROFILES.values() for s in services}
    assert all("deploy" in users[s] for s in ("stt", "tts", "llm"))
    # env_file: ${ENV_FILE}: the services get the settings of the file the test named.
    assert all(s["environment"]["SERVICE_API_KEY"] == values["SERVICE_API_KEY"] for s in users.values())

    def mounts(service: dict[str, Any]) -> set[tuple[str, str, bool]]:
        return {(v["source"], v["target"], v.get("read_only", False)) for v in service["volumes"]}

    llm_changes = {"image", "entrypoint", "command"}
    for name, service in users.items():
        changed = {"deploy", "volumes"} | (llm_changes if name == "llm" else set())
        assert {k: v for k, v in ci[name].items() if k not in changed} == {
            k: v for k, v in service.items() if k not in changed
        }, name
        assert "deploy" not in ci[name], name
        read_only_cache = {(s, t, ro or t == "/data/hf") for s, t, ro in mounts(service)}
        devkit_mount = {(str(ROOT / "devkit"), "/app/devkit", True)} if name == "llm" else set()
        assert mounts(ci[name]) == read_only_cache | devkit_mount, name
    llm = ci["llm"]
    assert (llm["image"], llm["entrypoint"], llm["command"]) == (
        image("orchestrator"),
        ["python", "-m", "devkit.llm_server"],
        ["--host", "0.0.0.0", "--port", str(values["LLM_PORT"])],
    )


def test_the_gpu_plan_reaches_compose_as_device_ids_and_tensor_parallel(tmp_path: Path) -> None:
    """slurm/placement.py's plan for four GPUs with TP=2, as compose settings (docs/containers.md)."""
    plan = subprocess.run(
        [sys.executable, str(ROOT / "slurm/placement.py"), "--gpus", "0,1,2,3", "--format", "env"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "LLM_TENSOR_PARALLEL_SIZE": "2"},
    ).stdout
    values = dict(line.split("=", 1) for line in plan.splitlines() if not line.startswith("#"))
    env_file = write_env_file(tmp_path / "gpus.env", {**settings("gpu", tmp_path / "hf"), **values})
    services = compose_config(env_file, COMPOSE_FILE)

    def device_ids(name: str) -> list[str]:
        return services[name]["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"]

    assert (device_ids("stt"), device_ids("tts"), device_ids("llm")) == (["0"], ["1"], ["2,3"])
    assert {"--tensor-parallel-size=2", "--gpu-memory-utilization=0.90"} <= set(services["llm"]["command"])


def test_leftovers_of_a_killed_run_are_removed() -> None:
    """A run killed before its teardown leaves a labelled container, network and volume."""
    label = f"{PROJECT_LABEL}={PROJECT_PREFIX}killed"
    network = f"{PROJECT_PREFIX}killed_default"
    volume = f"{PROJECT_PREFIX}killed_hf-cache"
    docker("network", "create", "--label", label, network, timeout=60)
    docker("volume", "create", "--label", label, volume, timeout=60)
    docker(
        *("run", "--detach", "--label", label, "--network", network, "--volume", f"{volume}:/data"),
        *("--entrypoint", "sleep", BASE_IMAGE, "600"),
        timeout=60,
    )
    remove_leftovers()
    assert compose_resources(lambda owner: owner.startswith(PROJECT_PREFIX)) == {
        kind: [] for kind in LISTINGS
    }


def test_every_service_is_healthy(stack: Project) -> None:
    assert stack.health() == dict.fromkeys(PROFILES[stack.profile], "healthy"), stack.unhealthy_report()


def test_deployment_suite_passes(stack: Project) -> None:
    """The cpu profile's orchestrator is checked over HTTPS/WSS with the user's certificate."""
    run_deployment_suite(stack.env_file, stack.tls_cert)


def test_down_leaves_nothing_of_the_project(stack: Project) -> None:
    stack.down()
    assert compose_resources(lambda owner: owner == stack.name) == {kind: [] for kind in LISTINGS}


def test_a_service_that_fails_is_named_with_its_log_and_down_leaves_nothing(tmp_path: Path) -> None:
    """A setting the TTS refuses: `up --wait` fails, and the failure says which service and why."""
    env_file = write_env_file(tmp_path / ".env", settings("cpu", None) | {"TTS_TEMPERATURE": "hot"})
    project = Project(f"{PROJECT_PREFIX}broken-{secrets.token_hex(4)}", "cpu", env_file)
    try:
        with pytest.raises(AssertionError) as failure:
            project.up()
    finally:
        project.down()
    report = str(failure.value)
    assert "--- tts-cpu: " in report and "valid number" in report, report
    # stt-cpu came up; orchestrator-cpu, which waits for a healthy tts-cpu, never started.
    assert "--- stt-cpu" not in report and "--- orchestrator-cpu: created" in report, report
    assert compose_resources(lambda owner: owner == project.name) == {kind: [] for kind in LISTINGS}
