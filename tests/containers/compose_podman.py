"""Run compose.yaml's services with Podman the way `docker compose up` would: the same images,
environment (interpolated from the `.env`), env_file, ports on 127.0.0.1, volumes,
healthchecks, one network where each service is reachable by its name, and start order by
`depends_on: service_healthy`. Only what CI must differ in is passed in as overrides.

CI has no Docker Compose (it needs Docker), so this reads compose.yaml itself rather than
adding another tool: the file stays the one description of how the services run.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
PODMAN = ROOT / "tests/containers/images.sh"
LABEL = "io.unmute-slurm.ci"

_VARIABLE = re.compile(r"\$\{(\w+)(?::([-?])([^}]*))?\}")


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?error}` (empty counts as unset)."""

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match.groups()
        if env.get(name):
            return env[name]
        if op == "?":
            raise ValueError(f"compose.yaml needs {name}: {arg}")
        return arg or ""

    return _VARIABLE.sub(replace, value)


def compose_services(compose_file: Path = ROOT / "compose.yaml") -> dict[str, Any]:
    """compose.yaml's `services`, as written (not interpolated)."""
    return yaml.safe_load(compose_file.read_text())["services"]


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines, as .env.example documents them (no quotes, no expansion)."""
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key.strip(): value for key, value in pairs if not key.lstrip().startswith("#")}


def podman(*args: str, timeout_s: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Podman with the project's CI storage/runtime flags (tests/containers/images.sh podman ...)."""
    result = subprocess.run(
        [str(PODMAN), "podman", *args], capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


@dataclass
class Override:
    """What CI changes about a compose service, and why it is allowed to."""

    image: str | None = None
    entrypoint: str | None = None
    command: list[str] | None = None
    environment: dict[str, str] = field(default_factory=dict)
    extra_volumes: list[str] = field(default_factory=list)


class ComposeProject:
    """Some services of compose.yaml, started in dependency order on a private network."""

    def __init__(self, env_file: Path, run_id: str, compose_file: Path = ROOT / "compose.yaml") -> None:
        self.env_file = env_file
        self.env = read_env_file(env_file)
        self.spec = compose_services(compose_file)
        self.run_id = run_id
        self.network = f"unmute-ci-{run_id}"
        self.started: list[str] = []

    def container(self, service: str) -> str:
        return f"unmute-ci-{self.run_id}-{service}"

    def run_args(self, service: str, override: Override) -> list[str]:
        """The `podman run` arguments compose would derive from this service's definition."""
        spec = self.spec[service]
        args = ["run", "--detach", "--name", self.container(service), "--label", f"{LABEL}={self.run_id}"]
        args += ["--network", self.network, "--network-alias", service, "--env-file", str(self.env_file)]
        environment = {k: interpolate(str(v), self.env) for k, v in spec.get("environment", {}).items()}
        for key, value in (environment | override.environment).items():
            args += ["--env", f"{key}={value}"]
        for port in spec.get("ports", []):
            args += ["--publish", interpolate(port, self.env)]
        for volume in [*spec.get("volumes", []), *override.extra_volumes]:
            source, target, *mode = interpolate(volume, self.env).split(":")
            if source.startswith("."):
                source = str((ROOT / source).resolve())
            if target == "/data/hf":
                mode = ["ro"]  # CI proves the services never write into the shared HF cache
            args += ["--volume", ":".join([source, target, *mode])]
        if spec.get("ipc"):
            args += ["--ipc", spec["ipc"]]
        health = spec.get("healthcheck")
        if health:
            kind, *command = health["test"]
            assert kind == "CMD", f"{service}: healthcheck must be an exec form (CMD)"
            args += ["--health-cmd", json.dumps(command)]
            for key in ("interval", "timeout", "retries", "start_period"):
                if key in health:
                    args += [f"--health-{key.replace('_', '-')}", str(health[key])]
        if override.entrypoint:
            args += ["--entrypoint", override.entrypoint]
        args.append(override.image or spec["image"])
        command = override.command if override.command is not None else spec.get("command", [])
        return args + [interpolate(str(part), self.env) for part in command]

    def up(self, services: list[str], overrides: Mapping[str, Override], ready_timeout_s: float) -> None:
        """Start each service once the ones it depends on are healthy, as compose orders them."""
        podman("network", "create", self.network)
        for service in services:
            for dependency in self.spec[service].get("depends_on", {}):
                assert dependency in self.started, f"{service} depends on {dependency}, not started yet"
            podman(*self.run_args(service, overrides.get(service, Override())))
            self.started.append(service)
            self.wait_healthy(service, ready_timeout_s)

    def wait_healthy(self, service: str, timeout_s: float) -> None:
        """Run the container's own healthcheck (`podman healthcheck run`) until it passes."""
        name = self.container(service)
        deadline = time.monotonic() + timeout_s
        while podman("healthcheck", "run", name, check=False).returncode != 0:
            state = podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
            if state != "running":
                raise RuntimeError(
                    f"{service} stopped ({state}) before it was healthy:\n{self.logs(service)}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"{service} not healthy after {timeout_s} s:\n{self.logs(service)}")
            time.sleep(2)

    def health_status(self, service: str) -> str:
        return podman(
            "inspect", "--format", "{{.State.Health.Status}}", self.container(service)
        ).stdout.strip()

    def exec(self, service: str, *command: str) -> subprocess.CompletedProcess[str]:
        return podman("exec", self.container(service), *command, check=False)

    def logs(self, service: str) -> str:
        result = podman("logs", "--tail", "40", self.container(service), check=False)
        return (result.stdout + result.stderr)[-4000:]

    @staticmethod
    def remove_leftovers() -> None:
        """Containers of an earlier run that was killed before it could clean up."""
        podman("rm", "--force", "--time", "0", "--filter", f"label={LABEL}", check=False)
        for network in podman("network", "ls", "--format", "{{.Name}}").stdout.split():
            if network.startswith("unmute-ci-"):
                podman("network", "rm", "--force", network, check=False)

    def down(self) -> None:
        """Remove every container of this run and its network, whatever state they are in."""
        podman("rm", "--force", "--time", "10", "--filter", f"label={LABEL}={self.run_id}", check=False)
        podman("network", "rm", "--force", self.network, check=False)
