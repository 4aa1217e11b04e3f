"""What a cluster user runs, run for real: `slurm/build` builds the three SIFs from
apptainer/*.def with --fakeroot, then `sbatch slurm/instances.sbatch` (RUNTIME=apptainer, the
default) starts them as Apptainer instances under real SLURM, on a compute node in a
container (tests/slurm/node.sh), as an unprivileged user. The moshi engines run the tiny
checkpoints from a read-only HF cache; the LLM is the scripted test server on the host."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devkit.checkpoints import STT_REPO, TTS_REPO, TTS_VOICES_REPO
from devkit.llm_server import MODEL as SCRIPTED_MODEL
from devkit.processes import ServiceProcess, start_service
from tests.containers.engine import BASE_IMAGE, ROOT, docker, require_engine
from tests.deployment.suite import run_deployment_suite
from tests.slurm.cluster import Cluster
from tests.slurm.jobs import Job
from tests.slurm.node import NODE_IMAGE, UID, USER, Node

# The first test also pays for the module's SIF builds (about 7 minutes on 2 cores).
pytestmark = [pytest.mark.moshi, pytest.mark.timeout(2400)]

IMAGES = ("stt", "tts", "orchestrator")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# CI packs the SIFs with lz4: gzip (Apptainer's default) costs ~5 min of 2 cores per model image.
MKSQUASHFS_ARGS = "-comp lz4"


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    require_engine(NODE_IMAGE, BASE_IMAGE)
    Node.remove_leftovers()
    node = Node()
    try:
        node.start()
        yield node
    finally:
        node.stop()


def build(node: Node, *args: str) -> tuple[int, str]:
    """slurm/build as the node's user, from the local base archive (no registry here)."""
    env = {"SIF_DIR": str(node.work / "sif"), "SCRATCH": str(node.work / "scratch")}
    env["MKSQUASHFS_ARGS"] = MKSQUASHFS_ARGS
    if HOST_CA_BUNDLE.is_file():  # a TLS-inspecting proxy's CA, as the Docker builds get it
        env["CA_BUNDLE"] = str(node.work / "ca-bundle.crt")
    base = ("--build-arg", "BOOTSTRAP=docker-archive", "--build-arg", f"BASE_IMAGE={node.work / 'base.tar'}")
    result = node.run([str(ROOT / "slurm/build"), *base, *args], cwd=ROOT, timeout=2400, env=env)
    return result.returncode, result.stdout + result.stderr


@pytest.fixture(scope="module")
def sifs(node: Node) -> Path:
    """stt.sif, tts.sif and orchestrator.sif, built by the user's own script."""
    docker("save", "--output", str(node.work / "base.tar"), BASE_IMAGE)
    (node.work / "base.tar").chmod(0o644)
    if HOST_CA_BUNDLE.is_file():
        shutil.copy(HOST_CA_BUNDLE, node.work / "ca-bundle.crt")
    status, output = build(node, *IMAGES)
    assert status == 0, f"slurm/build failed:\n{output[-5000:]}"
    return node.work / "sif"


@pytest.fixture(scope="module")
def llm(tmp_path_factory: pytest.TempPathFactory, api_key: str) -> Iterator[ServiceProcess]:
    """The scripted OpenAI-compatible server on the host; the node shares the host's network."""
    with start_service("devkit.llm_server", [], api_key, tmp_path_factory.mktemp("llm")) as server:
        yield server


@pytest.fixture(scope="module")
def hf_home(node: Node, tiny) -> Path:
    """The tiny checkpoints' cache in the node's work directory; the job binds it read-only."""
    target = node.work / "hf"
    shutil.copytree(tiny.hf_home, target, symlinks=True)
    for path in (target, *target.rglob("*")):
        shutil.chown(path, UID, UID)
    return target


@pytest.fixture
def job(node: Node, sifs: Path, hf_home: Path, llm: ServiceProcess, request: pytest.FixtureRequest) -> Job:
    """A job of the moshi engines on the tiny checkpoints, not yet submitted."""
    node.exports = {"RUNTIME": "apptainer", "SIF_DIR": str(sifs), "HF_HOME": str(hf_home)}
    settings = {
        "STT_ENGINE": "moshi",
        "STT_MODEL": STT_REPO,
        "STT_DEVICE": "cpu",
        "STT_BATCH_SIZE": "2",
        "TTS_ENGINE": "moshi",
        "TTS_MODEL": TTS_REPO,
        "TTS_VOICE_REPO": TTS_VOICES_REPO,
        "TTS_VOICE": "tiny/default.wav",
        "TTS_DEVICE": "cpu",
        "TTS_BATCH_SIZE": "2",
        "LLM_URL": f"http://127.0.0.1:{llm.port}/v1",
        "LLM_MODEL": SCRIPTED_MODEL,
        "LOG_FORMAT": "json",
    }
    return Job(node, node.workdir(request.node.name.split("[")[0]), **settings)


def instance_names(job: Job) -> list[str]:
    return sorted(f"unmute-{service}-{job.id}" for service in IMAGES)


def assert_nothing_left(node: Node, job: Job) -> None:
    assert node.instances(job) == [], job.text()
    assert job.leftovers() == [], job.text()
    assert job.ports_in_use() == [], job.text()


def test_apptainer_job_passes_the_deployment_suite_over_https_then_scancel_stops_every_instance(
    node: Node, job: Job
) -> None:
    """The orchestrator's certificate is made by the orchestrator SIF's python for this job,
    and the suite's orchestrator checks go over HTTPS/WSS trusting only that certificate."""
    job.add_settings(ORCHESTRATOR_TLS="self-signed")
    job.submit(READY_TIMEOUT_S="300")
    try:
        url = job.wait_output(r"\n  https://localhost:(\d+)/\?token=(\S+)", 600)
        assert url.group(1) == str(job.ports["ORCHESTRATOR_PORT"])
        assert sorted(node.instances(job)) == instance_names(job)
        run_deployment_suite(job.env, ca=job.job_dir / "tls" / "cert.pem")
    finally:
        job.cancel()
    assert job.wait_end() == "CANCELLED"
    job.wait_output("all services stopped", 30)
    assert_nothing_left(node, job)


def test_a_service_that_dies_ends_the_job_with_its_name_and_log(node: Node, job: Job) -> None:
    job.submit(READY_TIMEOUT_S="300")
    try:
        job.wait_output(r"open  http://localhost:\d+/", 600)
        server = r"python -m services\.tts$"
        killed = node.root("pkill", "--signal", "KILL", "--uid", "researcher", "--full", server)
        assert killed.returncode == 0, "no tts server process to kill"
        assert job.wait_end(60) == "FAILED"
    finally:
        job.cancel()
    text = job.text()
    assert "tts stopped; ending the job" in text
    # The tail of the dead service's own log comes before the verdict.
    before = text.split("tts stopped; ending the job")[0]
    assert re.search(r"services\.tts|Uvicorn running", before), text
    assert job.exit_code().startswith("1:")
    assert_nothing_left(node, job)


def test_time_limit_stops_every_instance_through_the_signal(node: Node, job: Job) -> None:
    # Two minutes, TERM 60 s before the end (SLURM may send it up to a minute earlier).
    job.submit("--time=2", "--signal=B:TERM@60", READY_TIMEOUT_S="300")
    try:
        job.wait_output("got a stop signal", 240)
        job.wait_end(120)
    finally:
        job.cancel()
    job.wait_output(r"all services stopped|stopping \(exit status 143\)", 30)
    assert_nothing_left(node, job)


def test_a_missing_sif_stops_the_job_before_anything_starts(node: Node, job: Job) -> None:
    empty = node.workdir("no-sifs")
    job.submit(SIF_DIR=str(empty))
    assert job.wait_end(60) == "FAILED"
    assert (
        f"no stt.sif tts.sif orchestrator.sif in SIF_DIR={empty}: "
        "build them with 'slurm/build stt tts orchestrator'" in job.text()
    )
    assert "starting" not in job.text()
    assert_nothing_left(node, job)


def test_a_def_that_fails_in_post_names_the_image_and_the_next_command(node: Node, sifs: Path) -> None:
    """slurm/build run from a copy of the project whose stt.def fails in %post."""
    tree = node.workdir("broken-project")
    (tree / "slurm").mkdir()
    (tree / "apptainer").mkdir()
    shutil.copy(ROOT / "slurm/build", tree / "slurm/build")
    text = (ROOT / "apptainer/stt.def").read_text()
    (tree / "apptainer/stt.def").write_text(re.sub(r"(?m)^%post\n", "%post\n    exit 3\n", text, count=1))
    (tree / "containers").symlink_to(ROOT / "containers")
    (tree / "kit").symlink_to(ROOT / "kit")
    (tree / "services").symlink_to(ROOT / "services")
    for path in (tree, *tree.rglob("*")):
        os.lchown(path, UID, UID)
    env = {"SIF_DIR": str(tree / "sif"), "SCRATCH": str(node.work / "scratch")}
    base = ("--build-arg", "BOOTSTRAP=docker-archive", "--build-arg", f"BASE_IMAGE={node.work / 'base.tar'}")
    result = node.run([str(tree / "slurm/build"), *base, "stt"], cwd=tree, timeout=600, env=env)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "building stt failed" in output and "rerun: slurm/build stt" in output, output[-3000:]
    assert not (tree / "sif/stt.sif").exists()


def test_an_unreadable_file_a_def_copies_is_named_before_apptainer_starts(node: Node) -> None:
    """A mode-700 `__pycache__` in the checkout (what a process under umask 077 leaves) stops
    slurm/build at once, naming the path and the chmod, rather than halfway through apptainer's
    copy. Root reads everything, so this needs the node's user."""
    tree = node.workdir("unreadable-project")
    for folder in ("slurm", "apptainer", "containers"):
        (tree / folder).mkdir()
    shutil.copy(ROOT / "slurm/build", tree / "slurm/build")
    shutil.copy(ROOT / "apptainer/orchestrator.def", tree / "apptainer/orchestrator.def")
    (tree / "containers/requirements").symlink_to(ROOT / "containers/requirements")
    (tree / "scripts").symlink_to(ROOT / "scripts")
    (tree / "orchestrator").symlink_to(ROOT / "orchestrator")
    shutil.copytree(ROOT / "kit", tree / "kit", ignore=shutil.ignore_patterns("__pycache__"))
    for path in (tree, *tree.rglob("*")):
        os.lchown(path, UID, UID)
    hidden = tree / "kit/__pycache__"
    hidden.mkdir(mode=0o700)  # root's, as the job's healthcheck once left them
    result = node.run([str(tree / "slurm/build"), "orchestrator"], cwd=tree, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"kit/__pycache__ is not readable by {USER}" in output, output
    assert "chmod -R a+rX kit/__pycache__" in output, output
    assert "build: orchestrator ->" not in output  # apptainer never started


# ---- replicas across nodes: the same SIFs on a two-host SLURM (tests/slurm/cluster.py) ------


@pytest.fixture(scope="module")
def cluster(sifs: Path) -> Iterator[Cluster]:
    """ctl + n1 + n2 on their own network, with this module's SIFs (hard links: no copy)."""
    require_engine(NODE_IMAGE)
    Cluster.remove_leftovers()
    cluster = Cluster()
    try:
        cluster.start()
        shared = cluster.workdir("sif")
        for image in IMAGES:
            os.link(sifs / f"{image}.sif", shared / f"{image}.sif")
        cluster.exports = {
            "RUNTIME": "apptainer",
            "SIF_DIR": str(shared),
            "HF_HOME": str(cluster.workdir("hf")),
        }
        yield cluster
    finally:
        cluster.stop()


def test_unmute_up_on_two_nodes_serves_from_both_outlives_one_nodes_services_and_down_stops_it(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The `unmute` command on the cluster's submit host (its Python, this checkout): up with
    --nodes 2, status --json (checked against its schema) with replicas on both nodes, the
    deployment suite, n2's model services killed (the job goes on with n1's), the suite again,
    then down. One job for all of it: a two-node start is the dearest step of CI."""
    work = cluster.workdir("cli")
    settings_file = work / "unmute.env"
    settings_file.write_text("STT_ENGINE=whisper\nTTS_ENGINE=piper\nLLM_URL=echo\n")
    env = {
        **cluster.exports,
        "PYTHONPATH": str(ROOT),
        "ENV_FILE": str(settings_file),
        "UNMUTE_JOBS_DIR": str(work / "jobs"),
        "XDG_STATE_HOME": str(work / "state"),
        "READY_TIMEOUT_S": "300",
    }

    def unmute(*args: str, timeout: float = 60) -> tuple[int, str]:
        result = cluster.run(["python3", "-m", "cli", *args], cwd=ROOT, timeout=timeout, env=env)
        return result.returncode, result.stdout + result.stderr

    status, text = unmute("up", "--nodes", "2", "--", "--cpus-per-task=1", "--mem=1G", timeout=900)
    assert status == 0, f"{text}\n{cluster.slurm_log()}"
    job_id = re.search(r"submitted job (\d+)", text).group(1)
    job = Job.submitted(cluster, work / "jobs", job_id, work / "jobs" / job_id)  # in UNMUTE_JOBS_DIR
    for node in ("n1", "n2"):
        assert f"stt on {node} ready" in text and f"tts on {node} ready" in text, text
    try:
        status, report = unmute("status", job.id, "--json")
        assert status == 0, report
        document = tmp_path / "status.json"
        document.write_text(report)
        schema = ROOT / "docs/unmute-status.schema.json"
        checker = [str(Path(sys.executable).parent / "check-jsonschema"), "--schemafile", str(schema)]
        checked = subprocess.run([*checker, str(document)], capture_output=True, text=True, check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        (reported,) = json.loads(report)["jobs"]
        assert reported["phase"] == "ready" and reported["nodes"] == ["n1", "n2"], reported
        ready = {(i["node"], i["instance"]) for i in reported["instances"] if i["state"] == "ready"}
        assert {("n1", "stt"), ("n2", "stt"), ("n1", "tts"), ("n2", "tts"), ("n1", "orchestrator")} <= ready
        for kind in ("stt", "tts"):
            assert [r["healthy"] for r in reported["backends"][kind]["replicas"]] == [True, True], reported

        settings = dict(line.split("=", 1) for line in job.env.read_text().splitlines() if "=" in line)
        n1, n2 = cluster.address("n1"), cluster.address("n2")
        for kind in ("STT_URLS", "TTS_URLS"):
            hosts = {url.split("//")[1].split(":")[0] for url in settings[kind].split(",")}
            assert hosts == {n1, n2}, settings[kind]
        assert settings["UNMUTE_HOST"] == n1  # the orchestrator runs on the batch node
        run_deployment_suite(job.env)

        # n2's model services die: its step ends, the job goes on with n1's replicas.
        server = r"python -m services\.(stt|tts)$"
        killed = cluster.node("n2").root("pkill", "--signal", "KILL", "--uid", "researcher", "--full", server)
        assert killed.returncode == 0, "no service process on n2"
        job.wait_output("the replicas on n2 stopped", 90)
        assert job.state() == "RUNNING"
        run_deployment_suite(job.env)
    finally:
        status, text = unmute("down", job.id, timeout=400)
    assert status == 0 and f"job {job.id} ended CANCELLED: all services stopped" in text, text
    # The orchestrator and n1's replicas run in steps of their own: each stops what it runs.
    logs = job.job_dir / "logs"
    for log in (logs / "orchestrator-step.log", logs / "node-n1.log"):
        wait_for_text(log, "stopped on n1")
    assert job.leftovers() == [], job.text()


def wait_for_text(path: Path, text: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in (path.read_text() if path.exists() else ""):
        assert time.monotonic() < deadline, f"no {text!r} in {path}"
        time.sleep(0.5)
