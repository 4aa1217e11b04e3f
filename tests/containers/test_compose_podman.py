"""How compose.yaml becomes `podman run` arguments (no podman needed): what the container
tests claim about running the services "as compose does" is checked here argument by argument."""

from __future__ import annotations

import json

import pytest

from tests.containers.compose_podman import ROOT, ComposeProject, Override, interpolate


@pytest.fixture
def project(tmp_path) -> ComposeProject:
    env = tmp_path / ".env"
    env.write_text(
        "STT_PORT=4101\nTTS_PORT=4103\nLLM_PORT=4102\nLLM_API_KEY=k\nHF_CACHE_DIR=/cache/hf\n# a comment\n"
    )
    return ComposeProject(env, run_id="t1")


def pairs(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, arg in enumerate(args) if arg == flag]


def test_interpolation_follows_compose():
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("${SET}-${SET:-d}-${EMPTY:-d}-${UNSET:-d}-${UNSET}", env) == "x-x-d-d-"
    with pytest.raises(ValueError, match="needs UNSET: say so"):
        interpolate("${UNSET:?say so}", env)


def test_a_service_runs_with_its_compose_definition(project):
    args = project.run_args("stt", Override())
    assert args[:2] == ["run", "--detach"] and args[-1] == "localhost/unmute-slurm/stt:dev"
    assert pairs(args, "--network") == ["unmute-ci-t1"] and pairs(args, "--network-alias") == ["stt"]
    assert pairs(args, "--env-file") == [str(project.env_file)]
    assert {"STT_HOST=0.0.0.0", "STT_ENGINE=moshi"} <= set(pairs(args, "--env"))
    assert pairs(args, "--publish") == ["127.0.0.1:4101:4101"]
    assert pairs(args, "--volume") == ["/cache/hf:/data/hf:ro"]  # the shared cache, read-only
    assert json.loads(pairs(args, "--health-cmd")[0])[-3:] == ["stt", "--timeout", "4"]
    assert pairs(args, "--health-start-period") == ["600s"] and pairs(args, "--health-retries") == ["3"]
    assert pairs(args, "--label") == ["io.unmute-slurm.ci=t1"]


def test_overrides_replace_only_what_they_name(project):
    scripted = Override(
        image="img",
        entrypoint="python",
        command=["-m", "x", "--port", "${LLM_PORT}"],
        extra_volumes=["./t:/t:ro"],
    )
    args = project.run_args("llm", scripted)
    assert args[-5:] == ["img", "-m", "x", "--port", "4102"]
    assert pairs(args, "--entrypoint") == ["python"] and pairs(args, "--ipc") == ["host"]
    assert f"{ROOT / 't'}:/t:ro" in pairs(args, "--volume")
    assert "/cache/hf:/data/hf:ro" in pairs(args, "--volume")


def test_dependencies_must_be_up_first(project, monkeypatch):
    monkeypatch.setattr("tests.containers.compose_podman.podman", lambda *a, **k: None)
    with pytest.raises(AssertionError, match="tts depends on stt"):
        project.up(["tts"], {}, ready_timeout_s=1)
