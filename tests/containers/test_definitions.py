"""Static checks of the container definitions: Dockerfile/.def parity, hadolint,
shellcheck and the compose-spec schema. (Building and running the images is the
container integration suite's job.)"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.containers.parity import differences, from_def, from_dockerfile

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ["stt", "tts", "orchestrator"]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize("image", IMAGES)
def test_dockerfile_and_def_agree(image):
    assert differences(ROOT / f"containers/{image}.Dockerfile", ROOT / f"apptainer/{image}.def") == []
    spec = from_dockerfile(ROOT / f"containers/{image}.Dockerfile")
    assert spec.command[:2] == ("python", "-m") and spec.healthcheck[:3] == (
        "python",
        "-m",
        "kit.healthcheck",
    )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (("stt.txt", "tts.txt"), "locks"),
        (("python:3.11.14-slim-bookworm", "python:3.12-slim-bookworm"), "base"),
        (("STT_MODEL:-kyutai/stt-1b-en_fr", "STT_MODEL:-kyutai/stt-2.6b-en"), "environment"),
        (("exec python -m services.stt\n", "exec python -m services.tts\n"), "command"),
        (('exec python -m services.stt "$@"', 'exec python -m services.tts "$@"'), "command"),
        (("--service stt", "--service tts"), "healthcheck"),
        (("services /app/services", "services /opt/services"), "code"),
    ],
)
def test_breaking_parity_is_caught(tmp_path, change, field):
    broken = tmp_path / "stt.def"
    text = (ROOT / "apptainer/stt.def").read_text()
    assert change[0] in text
    broken.write_text(text.replace(change[0], change[1], 1))
    found = differences(ROOT / "containers/stt.Dockerfile", broken)
    assert any(d.startswith(f"{field}:") for d in found), found


def test_the_orchestrator_image_copies_no_service_code():
    """Both formats copy the shared kit and the orchestrator, and nothing of services/ (the STT
    and TTS engines); tests/containers/test_images.py checks the built image's files."""
    for spec in (
        from_dockerfile(ROOT / "containers/orchestrator.Dockerfile"),
        from_def(ROOT / "apptainer/orchestrator.def"),
    ):
        sources = [source for source, _ in spec.code]
        assert {"kit", "orchestrator"} <= set(sources), sources
        assert [s for s in sources if s.split("/")[0] in ("services", "devkit", "tests")] == []


def test_stt_and_tts_share_their_heavy_layer():
    """Builders reuse a layer only when every instruction up to it is the same: stt must
    repeat tts's instructions exactly, through the torch + moshi install, before its own."""

    def instructions(name: str) -> list[str]:
        text = (ROOT / f"containers/{name}.Dockerfile").read_text()
        return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]

    tts, stt = instructions("tts"), instructions("stt")
    heavy_end = next(i for i, line in enumerate(tts) if "chown 1000 /data/hf" in line)
    assert stt[: heavy_end + 1] == tts[: heavy_end + 1]
    assert "--require-hashes -r /tmp/tts.txt" in "\n".join(tts[: heavy_end + 1])
    assert from_def(ROOT / "apptainer/stt.def").locks == ("tts.txt", "stt.txt")


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)


def test_hadolint():
    result = run(str(BIN / "hadolint"), *(f"containers/{i}.Dockerfile" for i in IMAGES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck():
    globs = ("scripts/*.sh", "slurm/lib/*.sh", "tests/slurm/*.sh", "tests/containers/*.sh", "bench/*.sh")
    found = [path for pattern in globs for path in ROOT.glob(pattern)]
    scripts = [str(p.relative_to(ROOT)) for p in found]
    scripts += [".ci/run", "slurm/instances.sbatch", "slurm/node-services", "slurm/prefetch", "slurm/build"]
    result = run(str(BIN / "shellcheck"), "--external-sources", *scripts)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_matches_the_compose_spec():
    checker = shutil.which("check-jsonschema", path=str(BIN)) or "check-jsonschema"
    result = run(checker, "--builtin-schema", "vendor.compose-spec", "compose.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_env_example_covers_every_variable_compose_uses():
    import re

    # ENV_FILE names the settings file itself (`env_file: ${ENV_FILE:-.env}`), so it is set
    # outside it, as for the SLURM job and `make integration`.
    used = set(re.findall(r"\$\{(\w+)", (ROOT / "compose.yaml").read_text())) - {"ENV_FILE"}
    defined = {
        line.split("=", 1)[0] for line in (ROOT / ".env.example").read_text().splitlines() if "=" in line
    }
    assert used - defined == set()


def test_vllm_is_pinned_to_the_same_tag_everywhere():
    from spython.main.parse.parsers import SingularityParser

    (stage,) = SingularityParser(str(ROOT / "apptainer/vllm.def")).recipe.values()
    compose = (ROOT / "compose.yaml").read_text()
    assert stage.fromHeader.startswith("vllm/vllm-openai:v") and f"image: {stage.fromHeader}\n" in compose
    startscript = (ROOT / "apptainer/vllm.def").read_text().split("%startscript")[1].split("%runscript")[0]
    for flag in ("--gpu-memory-utilization", "--max-model-len", "--limit-mm-per-prompt", "--host", "--port"):
        assert flag in startscript
    assert (
        "VLLM_API_KEY" in startscript and "--api-key" not in startscript
    )  # the key stays off the process list


def test_llm_healthcheck_needs_the_served_model(tmp_path, monkeypatch):
    import http.server
    import threading

    from kit import healthcheck

    class Models(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            ok = self.headers.get("Authorization") == "Bearer k"
            body = b'{"data": [{"id": "served/model"}]}' if ok else b"{}"
            self.send_response(200 if ok else 401)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Models)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("LLM_PORT", str(server.server_port))
        monkeypatch.setenv("LLM_API_KEY", "k")
        monkeypatch.setenv("LLM_MODEL", "served/model")
        assert healthcheck.probe_llm(2) is None
        monkeypatch.setenv("LLM_MODEL", "other/model")
        assert "not other/model" in healthcheck.probe_llm(2)
        monkeypatch.setenv("LLM_API_KEY", "wrong")
        assert healthcheck.probe_llm(2) is not None
    finally:
        server.shutdown()
        server.server_close()
