"""What a Dockerfile and its Apptainer .def must agree on, read with spython's parsers.

Both are reduced to the same shape: base image, lock files installed (in order), code
copied (source -> destination), environment defaults, the server command and the
healthcheck command. Only differences listed in `ALLOWED` (with their reason) pass.
"""

from __future__ import annotations

import re
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path

from spython.main.parse.parsers import DockerParser, SingularityParser

LOCKS = "containers/requirements/"
# Docker publishes ports, so its services listen on all interfaces inside the container;
# Apptainer shares the node's network, where internal services must stay on loopback.
ALLOWED = {"STT_HOST", "TTS_HOST", "ORCHESTRATOR_HOST"}


@dataclass(frozen=True)
class ImageSpec:
    base: str
    locks: tuple[str, ...]
    code: tuple[tuple[str, str], ...]
    environment: dict[str, str]
    command: tuple[str, ...]
    healthcheck: tuple[str, ...]


def _recipe(parser_cls, path: Path):
    recipe = parser_cls(str(path)).recipe  # the constructor parses; parse() again would duplicate
    (stage,) = recipe.values()
    return stage


def _split_files(pairs: list[tuple[str, str]]) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    locks = tuple(Path(src).name for src, _ in pairs if src.startswith(LOCKS))
    code = tuple(sorted((src, dst) for src, dst in pairs if not src.startswith(LOCKS)))
    return locks, code


def _env(entries: list[str]) -> dict[str, str]:
    env = {}
    for entry in entries:
        key, _, value = entry.partition("=")
        default = re.fullmatch(r"\$\{\w+:-(.*)\}", value)  # .def: ${KEY:-default}
        env[key] = default.group(1) if default else value
    return {k: v for k, v in env.items() if k not in ALLOWED}


def from_dockerfile(path: Path) -> ImageSpec:
    r = _recipe(DockerParser, path)
    locks, code = _split_files([tuple(pair) for pair in r.files])
    (check,) = r.test
    healthcheck = tuple(__import__("json").loads(check.removeprefix("CMD").strip()))
    return ImageSpec(r.fromHeader, locks, code, _env(r.environ), tuple(r.entrypoint), healthcheck)


def build_arguments(text: str) -> dict[str, str]:
    """A .def's %arguments defaults (what `apptainer build` uses without --build-arg)."""
    section = re.search(r"^%arguments\n(.*?)(?=^%|\Z)", text, re.S | re.M)
    lines = section.group(1).splitlines() if section else []
    return dict(
        line.strip().split("=", 1) for line in lines if "=" in line and not line.strip().startswith("#")
    )


def render_def(path: Path, target: Path) -> Path:
    """`path` with its {{ NAME }} build arguments replaced by their defaults, written to `target`."""
    text = path.read_text()
    arguments = build_arguments(text)

    def value(match: re.Match[str]) -> str:
        if match.group(1) not in arguments:
            raise AssertionError(f"{path}: {{{{ {match.group(1)} }}}} has no default in %arguments")
        return arguments[match.group(1)]

    target.write_text(re.sub(r"\{\{\s*(\w+)\s*\}\}", value, text))
    return target


def from_def(path: Path) -> ImageSpec:
    # spython reads neither %arguments nor templated headers: parse the defaults' rendering.
    with tempfile.TemporaryDirectory() as directory:
        r = _recipe(SingularityParser, render_def(path, Path(directory) / path.name))
    locks, code = _split_files([tuple(line.split()) for line in r.files])

    # spython turns %runscript and %test into shell lines echoed into scripts.
    def script(target: str) -> tuple[str, ...]:
        for line in r.install:
            match = re.fullmatch(rf'echo "exec (.*?)( "\$@")?" >> {target}', line)
            if match:
                return tuple(shlex.split(match.group(1)))
        raise AssertionError(f"{path}: no exec line for {target}")

    # spython does not read %startscript, which is what `apptainer instance start` runs:
    # its exec line must be the same command as %runscript's.
    section = re.search(r"^%startscript\n(.*?)^%", path.read_text(), re.S | re.M)
    lines = section.group(1).splitlines() if section else []
    execs = [line.strip().removeprefix("exec ") for line in lines if line.strip().startswith("exec ")]
    command = tuple(shlex.split(execs[0])) if execs else ("<no exec in %startscript>",)
    if command != script("/entrypoint.sh"):
        command = (*command, "<differs from %runscript>")
    return ImageSpec(r.fromHeader, locks, code, _env(r.environ), command, script("/tests.sh"))


def differences(dockerfile: Path, definition: Path) -> list[str]:
    """Human-readable disagreements; empty when the two images are built alike."""
    docker, apptainer = from_dockerfile(dockerfile), from_def(definition)
    out = []
    for field in ImageSpec.__dataclass_fields__:
        a, b = getattr(docker, field), getattr(apptainer, field)
        if a != b:
            out.append(f"{field}: {dockerfile.name} has {a!r}, {definition.name} has {b!r}")
    return out
