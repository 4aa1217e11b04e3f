"""The SLURM job's planning (slurm/plan.py, slurm/placement.py, slurm/port_claims.py) without
SLURM: the GPU plans and the plans that cannot fit, port claims between racing jobs (and the
old bash jobs' `flock`), job.env, the TLS choice, the plan file as bash reads it, DRY_RUN's
output, a multi-node job's replica URLs and the announcement."""

from __future__ import annotations

import multiprocessing
import os
import re
import socket
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devkit.processes import free_port
from tests.tls_pairs import write_pair
from tests.unit.slurm.slurm_scripts import ROOT, SLURM, load

placement = load("placement")
port_claims = load("port_claims")
job_module = load("job")
certificate = load("certificate")
plan = load("plan")

PLAN = SLURM / "plan.py"
SECRETS = ("SERVICE_API_KEY", "ACCESS_TOKEN", "LLM_API_KEY", "HF_TOKEN")


# ---- the GPU plan -------------------------------------------------------------------------------


def devices(gpus: str, external_llm: bool = False, **env: str) -> dict[str, str]:
    """instance -> CUDA_VISIBLE_DEVICES for the GPU ids SLURM gave."""
    ids = [g for g in gpus.split(",") if g]
    return {i.name: i.devices(ids) for i in placement.plan(len(ids), env, external_llm)}


def memory(gpus: str, **env: str) -> dict[str, str]:
    return {i.name: i.memory for i in placement.plan(len(gpus.split(",")), env, False)}


@pytest.mark.parametrize(
    ("gpus", "expected"),
    [
        ("0", {"stt": "0", "tts": "0", "llm": "0"}),
        ("0,1", {"stt": "0", "tts": "0", "llm": "1"}),
        ("0,1,2,3", {"stt": "0", "tts": "1", "tts2": "2", "llm": "3"}),
        (
            "0,1,2,3,4,5,6,7",
            {
                "stt": "0",
                "tts": "1",
                "tts2": "2",
                "tts3": "3",
                "tts4": "4",
                "tts5": "5",
                "tts6": "6",
                "llm": "7",
            },
        ),
    ],
)
def test_default_plans_use_every_gpu(gpus: str, expected: dict[str, str]) -> None:
    assert devices(gpus) == expected


def test_the_plan_maps_positions_to_the_ids_slurm_gave() -> None:
    # A job that got GPUs 4-7 of a shared node: position 0 is GPU 4.
    assert devices("4,5,6,7") == {"stt": "4", "tts": "5", "tts2": "6", "llm": "7"}


def test_vllm_takes_what_stt_and_tts_leave_on_a_shared_gpu_and_090_of_its_own() -> None:
    assert memory("0")["llm"] == "auto"
    assert memory("0,1")["llm"] == "0.90"
    assert memory("0,1", LLM_GPU_MEMORY_UTILIZATION="0.8")["llm"] == "0.8"


def test_tensor_parallel_takes_the_last_gpus() -> None:
    assert devices("0,1,2,3,4,5,6,7", LLM_TENSOR_PARALLEL_SIZE="2")["llm"] == "6,7"
    assert devices("0,1,2,3", LLM_TENSOR_PARALLEL_SIZE="2") == {"stt": "0", "tts": "1", "llm": "2,3"}
    assert devices("0,1,2,3", LLM_GPUS="0,1", STT_GPUS="2", TTS_GPUS="3") == {
        "stt": "2",
        "tts": "3",
        "llm": "0,1",
    }


def test_one_of_stt_gpus_and_tts_gpus_puts_the_other_on_its_first_gpu() -> None:
    assert devices("0,1,2,3", TTS_GPUS="1,2") == {"stt": "1", "tts": "1", "tts2": "2", "llm": "3"}


def test_an_external_llm_leaves_every_gpu_to_stt_and_tts() -> None:
    assert devices("0,1,2,3", external_llm=True) == {"stt": "0", "tts": "1", "tts2": "2", "tts3": "3"}
    assert devices("", external_llm=True) == {"stt": "", "tts": ""}


@pytest.mark.parametrize(
    ("gpus", "env", "reason"),
    [
        (
            "0,1",
            {"LLM_TENSOR_PARALLEL_SIZE": "4"},
            "LLM_TENSOR_PARALLEL_SIZE=4 needs 4 GPUs, but the job has 2",
        ),
        ("0,1,2,3", {"LLM_TENSOR_PARALLEL_SIZE": "3"}, "must be a power of two"),
        ("0,1", {"TTS_GPUS": "1,2"}, "TTS_GPUS=1,2 names GPU 2, but the job has 2 GPU(s)"),
        ("0,1,2,3", {"LLM_GPUS": "2,3", "LLM_TENSOR_PARALLEL_SIZE": "4"}, "LLM_GPUS lists 2 GPU(s)"),
        ("0,1", {"STT_GPUS": "one"}, "STT_GPUS=one: expected GPU positions"),
        ("0,1", {"TTS_BATCH_SIZE": "many"}, "TTS_BATCH_SIZE=many: expected a whole number"),
        ("", {}, "vLLM needs a GPU and this job has none"),
    ],
)
def test_a_plan_that_cannot_fit_says_why(gpus: str, env: dict[str, str], reason: str) -> None:
    with pytest.raises(placement.PlanError, match=re.escape(reason)):
        devices(gpus, **env)


def test_placement_py_prints_the_plan_or_exits_2_with_the_reason() -> None:
    command = [sys.executable, str(SLURM / "placement.py"), "--gpus", "0,1"]
    shown = subprocess.run(command, capture_output=True, text=True, check=True)
    assert re.search(r"^  llm +CUDA_VISIBLE_DEVICES=1 +memory 0\.90, tensor parallel 1$", shown.stdout, re.M)
    env = {**os.environ, "LLM_TENSOR_PARALLEL_SIZE": "4"}
    refused = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.startswith("placement: LLM_TENSOR_PARALLEL_SIZE=4 needs 4 GPUs")


# ---- port claims --------------------------------------------------------------------------------


def claims(directory: Path, owner: int | None = None, lock_timeout_s: float = 10) -> port_claims.PortClaims:
    return port_claims.PortClaims(directory, owner or os.getpid(), "42", lock_timeout_s)


def claim_in_a_process(directory: str, port: int, start: Any, out: Any) -> None:
    """One racer: claim `port` (or a spare) under the lock, owned by the test process (alive)."""
    racer = port_claims.PortClaims(Path(directory), os.getppid(), f"racer-{os.getpid()}")
    start.wait()
    with racer.locked():
        out.put(racer.pick(port))


def test_planners_racing_for_one_port_get_one_each(tmp_path: Path) -> None:
    port, racers = free_port(), 6
    context = multiprocessing.get_context("fork")
    start, out = context.Barrier(racers), context.Queue()
    processes = [
        context.Process(target=claim_in_a_process, args=(str(tmp_path), port, start, out))
        for _ in range(racers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(30)
        assert process.exitcode == 0
    got = [out.get(timeout=5) for _ in range(racers)]
    assert len(set(got)) == racers and port in got, got
    owners = {p: (tmp_path / str(p) / "owner").read_text().split() for p in got}
    assert all(owner[0] == str(os.getpid()) for owner in owners.values()), owners


def test_a_stale_claim_is_taken_over_and_a_live_one_is_not(tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that no process has now: a job that was SIGKILLed
    stale, live = free_port(), free_port()
    for port, owner in ((stale, gone.pid), (live, os.getpid())):
        (tmp_path / str(port)).mkdir()
        (tmp_path / str(port) / "owner").write_text(f"{owner} 7 someone\n")
    mine = claims(tmp_path)
    with mine.locked():
        assert mine.pick(stale) == stale
        assert mine.pick(live) != live
    assert (tmp_path / str(stale) / "owner").read_text().split()[:2] == [str(mine.owner), "42"]


def test_a_port_something_listens_on_is_skipped(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("0.0.0.0", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        mine = claims(tmp_path)
        with mine.locked():
            got = mine.pick(taken)
    assert got != taken and got in port_claims.SPARE_PORTS
    assert not (tmp_path / str(taken)).exists()


def test_the_lock_is_the_one_the_bash_jobs_took_with_flock(tmp_path: Path) -> None:
    """A job of the old script holds `flock DIR/.lock` while it picks: the planner waits for
    it (and gives up with the reason after its timeout); the lock file stays open to all."""
    directory = tmp_path / "claims"
    with claims(directory).locked():
        pass
    assert stat.S_IMODE((directory / ".lock").stat().st_mode) == 0o666
    assert stat.S_IMODE(directory.stat().st_mode) == 0o1777
    held, done = tmp_path / "held", tmp_path / "done"
    script = f"touch {held}; sleep 1; touch {done}"
    holder = subprocess.Popen(["flock", str(directory / ".lock"), "sh", "-c", script])
    try:
        while not held.exists():
            assert holder.poll() is None
            time.sleep(0.02)
        refused = pytest.raises(port_claims.ClaimError, match="another job has held the port lock")
        with refused, claims(directory, lock_timeout_s=0.2).locked():
            pass
        with claims(directory, lock_timeout_s=30).locked():
            assert done.exists(), "the planner got the lock while flock held it"
    finally:
        holder.wait(10)


def test_release_removes_only_the_owners_claims(tmp_path: Path) -> None:
    mine, other = claims(tmp_path, owner=os.getpid()), claims(tmp_path, owner=os.getppid())
    with mine.locked():
        a, b = mine.pick(None), other.pick(None)
    mine.release()
    assert not (tmp_path / str(a)).exists() and (tmp_path / str(b) / "owner").exists()


# ---- the job's plan ------------------------------------------------------------------------------


def user_env(tmp_path: Path, **settings: str) -> Path:
    """The user's settings file: their .env's secrets and ports among them."""
    lines = {
        "STT_PORT": str(free_port()),
        "TTS_PORT": str(free_port()),
        "ORCHESTRATOR_PORT": str(free_port()),
        "SERVICE_API_KEY": "users-service-key",
        "ACCESS_TOKEN": "users-token",
        "LLM_API_KEY": "users-llm-key",
        "HF_TOKEN": "hf_users",
        "STT_URLS": "ws://elsewhere:1",
        "ORCHESTRATOR_TLS": "off",
        "CUDA_VISIBLE_DEVICES": "5",
        "STT_ENGINE": "whisper",
        "LLM_URL": "echo",
        **settings,
    }
    path = tmp_path / "user.env"
    path.write_text("# a comment\n" + "".join(f"{k}={v}\n" for k, v in lines.items()))
    return path


def job_environ(tmp_path: Path, **extra: str) -> dict[str, str]:
    """What the batch script exports to slurm/plan.py."""
    if not (tmp_path / "user.env").exists():
        user_env(tmp_path)
    (tmp_path / "job").mkdir(exist_ok=True)
    return {
        "PATH": os.environ["PATH"],
        "UNMUTE_DIR": str(ROOT),
        "JOB_ID": "42",
        "JOB_DIR": str(tmp_path / "job"),
        "RUNTIME": "host",
        "SIF_DIR": str(tmp_path / "sif"),
        "ENV_FILE": str(tmp_path / "user.env"),
        "PORT_CLAIMS_DIR": str(tmp_path / "claims"),
        "CUDA_VISIBLE_DEVICES": "0",
        **extra,
    }


def read_env(path: Path) -> dict[str, str]:
    """A KEY=value file (job.env) as a dict."""
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def plan_job(tmp_path: Path, **extra: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """slurm/plan.py job in-process: job.env and the plan file's records."""
    job = job_module.Job.from_environ(job_environ(tmp_path, **extra), "node1")
    plan.plan_job(job, os.getpid(), tmp_path / "job/plan")
    return read_env(job.job_env), plan.read_plan(tmp_path / "job/plan")


def test_job_env_passes_the_users_settings_but_none_of_their_secrets_ports_or_urls(tmp_path: Path) -> None:
    env, _ = plan_job(tmp_path)
    file = dict(
        line.split("=", 1) for line in (tmp_path / "user.env").read_text().splitlines() if "=" in line
    )
    assert env["STT_ENGINE"] == "whisper" and env["LLM_URL"] == "echo"
    for key in SECRETS:
        assert file[key] not in env.values(), key
    assert "HF_TOKEN" not in env and "CUDA_VISIBLE_DEVICES" not in env
    assert env["STT_URLS"] == f"ws://127.0.0.1:{env['STT_PORT']}" and "LLM_URLS" not in env
    assert env["STT_PORT"] == file["STT_PORT"] and env["ORCHESTRATOR_PORT"] == file["ORCHESTRATOR_PORT"]
    assert (env["STT_HOST"], env["ORCHESTRATOR_HOST"], env["HF_HUB_OFFLINE"]) == ("127.0.0.1", "0.0.0.0", "1")
    assert stat.S_IMODE((tmp_path / "job/job.env").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "job/plan").stat().st_mode) == 0o600


def test_every_job_gets_fresh_secrets(tmp_path: Path) -> None:
    first, _ = plan_job(tmp_path)
    port_claims.PortClaims(tmp_path / "claims", os.getpid(), "").release()
    second, _ = plan_job(tmp_path)
    for key in ("SERVICE_API_KEY", "ACCESS_TOKEN", "LLM_API_KEY"):
        assert first[key] != second[key] and len(first[key]) >= 40, key
    assert len({first["SERVICE_API_KEY"], first["ACCESS_TOKEN"], first["LLM_API_KEY"]}) == 3


def test_a_multi_node_job_plans_the_orchestrator_and_binds_the_replicas_to_every_address(
    tmp_path: Path,
) -> None:
    def scontrol(args: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        assert args[:3] == ["scontrol", "show", "hostnames"]
        return subprocess.CompletedProcess(args, 0, "localhost\n127.0.0.1\n", "")

    job = job_module.Job.from_environ(job_environ(tmp_path, SLURM_JOB_NODELIST="n[1-2]"), "localhost")
    plan.plan_job(job, os.getpid(), tmp_path / "job/plan", run=scontrol)
    records = plan.read_plan(tmp_path / "job/plan")
    assert records["node"] == ["localhost", "127.0.0.1"]
    assert [r.split()[0] for r in records["instance"]] == ["orchestrator"]
    env = job.job_env.read_text()
    assert "STT_HOST=0.0.0.0\n" in env and "STT_URLS" not in env and "STT_PORT" not in env


def test_a_node_without_an_address_ends_the_plan(tmp_path: Path) -> None:
    def scontrol(args: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(args, 0, "localhost\nno-such-node.invalid\n", "")

    job = job_module.Job.from_environ(job_environ(tmp_path, SLURM_JOB_NODELIST="x"), "localhost")
    with pytest.raises(placement.PlanError, match=r"node no-such-node\.invalid has no address"):
        job_module.job_nodes(job, run=scontrol)


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({"ORCHESTRATOR_TLS_CERT_FILE": "/x/cert.pem"}, "set both ORCHESTRATOR_TLS_CERT_FILE and"),
        ({"ORCHESTRATOR_TLS_KEY_FILE": "/x/key.pem"}, "(one is empty)"),
        ({"ORCHESTRATOR_TLS": "on"}, "ORCHESTRATOR_TLS must be off or self-signed"),
    ],
)
def test_a_tls_setting_that_makes_no_sense_ends_the_plan_before_any_port_is_claimed(
    tmp_path: Path, settings: dict[str, str], reason: str
) -> None:
    user_env(tmp_path, **settings)
    with pytest.raises(placement.PlanError, match=re.escape(reason)):
        plan_job(tmp_path)
    assert not list((tmp_path / "claims").glob("*/owner"))


def test_the_tls_mode_the_settings_ask_for(tmp_path: Path) -> None:
    def mode(**settings: str) -> str:
        return certificate.tls_mode(job_module.Settings(user_env(tmp_path, **settings), {}))

    assert mode() == "off" and mode(ORCHESTRATOR_TLS="") == "off"
    assert mode(ORCHESTRATOR_TLS="self-signed") == "self-signed"
    assert mode(ORCHESTRATOR_TLS_CERT_FILE="c", ORCHESTRATOR_TLS_KEY_FILE="k") == "files"


def test_a_self_signed_job_plans_https_with_the_certificate_the_orchestrator_made(tmp_path: Path) -> None:
    user_env(tmp_path, ORCHESTRATOR_TLS="self-signed")
    env, records = plan_job(tmp_path)
    tls = tmp_path / "job/tls"
    assert (tls / "cert.pem").is_file() and (tls / "key.pem").is_file()
    assert re.fullmatch(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", records["fingerprint"][0])
    assert records["url"] == [f"https://node1:{env['ORCHESTRATOR_PORT']}/"]
    assert f"orchestrator ORCHESTRATOR_TLS_CERT_FILE={tls}/cert.pem" in records["env"]


def test_an_expired_certificate_ends_the_plan_with_the_reason(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    cert, key = write_pair(tmp_path / "mine", now - timedelta(days=9), now - timedelta(days=1))
    user_env(tmp_path, ORCHESTRATOR_TLS_CERT_FILE=str(cert), ORCHESTRATOR_TLS_KEY_FILE=str(key))
    with pytest.raises(placement.PlanError, match=r"bad TLS certificate \(.*\): .*expired on"):
        plan_job(tmp_path)


def test_an_apptainer_orchestrator_sees_the_certificate_where_it_is_bound(tmp_path: Path) -> None:
    placed = plan.Placed(plan.ORCHESTRATOR, "", 3004)
    records = placed.records("apptainer", tmp_path / "tls")
    assert "env orchestrator ORCHESTRATOR_TLS_KEY_FILE=/run/unmute-tls/key.pem" in records
    assert f"bind orchestrator {tmp_path / 'tls'}:/run/unmute-tls:ro" in records


@pytest.mark.parametrize(
    ("runtime", "settings", "reason"),
    [
        ("host", {"LLM_URL": ""}, "RUNTIME=host does not start vLLM: set LLM_URL"),
        ("podman", {}, "RUNTIME must be apptainer or host, not 'podman'"),
    ],
)
def test_a_runtime_that_cannot_run_the_settings_ends_the_plan(
    tmp_path: Path, runtime: str, settings: dict[str, str], reason: str
) -> None:
    user_env(tmp_path, **settings)
    with pytest.raises(placement.PlanError, match=re.escape(reason)):
        plan_job(tmp_path, RUNTIME=runtime)


def test_apptainer_needs_apptainer_and_every_sif_of_the_job(tmp_path: Path) -> None:
    with pytest.raises(placement.PlanError, match="apptainer not found; load its module or use RUNTIME=host"):
        plan_job(tmp_path, RUNTIME="apptainer", PATH=str(tmp_path))
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/apptainer").write_text("#!/bin/sh\n")
    (tmp_path / "bin/apptainer").chmod(0o755)
    (tmp_path / "sif").mkdir()
    (tmp_path / "sif/tts.sif").write_text("")
    user_env(tmp_path, LLM_URL="")
    with pytest.raises(placement.PlanError) as refused:
        plan_job(tmp_path, RUNTIME="apptainer", PATH=str(tmp_path / "bin"))
    assert str(refused.value) == (
        f"no stt.sif vllm.sif orchestrator.sif in SIF_DIR={tmp_path / 'sif'}: "
        "build them with 'slurm/build stt vllm orchestrator' (or point SIF_DIR at them)"
    )


def test_no_settings_file_ends_the_plan(tmp_path: Path) -> None:
    with pytest.raises(placement.PlanError, match=r"no settings file \(.*nowhere.env\)"):
        plan_job(tmp_path, ENV_FILE=str(tmp_path / "nowhere.env"))


# ---- the plan file, as bash reads it -------------------------------------------------------------

READ_PLAN = """
set -euo pipefail
JOB_ID=42 NODE=n RUNTIME=host UNMUTE_DIR={root} JOB_DIR={job}
source {root}/slurm/lib/common.sh
source {root}/slurm/lib/instances.sh
read_plan {plan}
for name in "${{MODEL_INSTANCES[@]}}" orchestrator; do
  echo "$name|${{INST_SERVICE[$name]}}|${{INST_PORT[$name]}}|${{INST_DEVICES[$name]}}|${{INST_MEMORY[$name]}}"
  instance_env "$name" | sed "s/^/  /"
done
planned node
planned url
"""


def test_bash_reads_the_plan_file_into_the_instances_it_starts(tmp_path: Path) -> None:
    user_env(tmp_path, LLM_URL="", LLM_GPU_MEMORY_UTILIZATION="", STT_MODEL="kyutai/stt-1b-en_fr")
    env, _ = plan_job(tmp_path, CUDA_VISIBLE_DEVICES="4,5", DRY_RUN="1")
    script = READ_PLAN.format(root=ROOT, job=tmp_path / "job", plan=tmp_path / "job/plan")
    shown = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    llm_port = re.search(r"^llm\|llm\|(\d+)\|", shown, re.M).group(1)
    assert shown.splitlines() == [
        f"stt|stt|{env['STT_PORT']}|4|~30 GiB (batch 256)",
        f"  STT_PORT={env['STT_PORT']}",
        "  CUDA_VISIBLE_DEVICES=4",
        f"tts|tts|{env['TTS_PORT']}|4|batch 16",
        f"  TTS_PORT={env['TTS_PORT']}",
        "  CUDA_VISIBLE_DEVICES=4",
        f"llm|llm|{llm_port}|5|0.90",
        f"  LLM_PORT={llm_port}",
        "  CUDA_VISIBLE_DEVICES=5",
        "  LLM_TENSOR_PARALLEL_SIZE=1",
        "  LLM_GPU_MEMORY_UTILIZATION=0.90",
        f"orchestrator|orchestrator|{env['ORCHESTRATOR_PORT']}||-",
        f"  ORCHESTRATOR_PORT={env['ORCHESTRATOR_PORT']}",
        "  CUDA_VISIBLE_DEVICES=",
        "node1",
        f"http://node1:{env['ORCHESTRATOR_PORT']}/",
    ]


# ---- slurm/plan.py as the batch script runs it ------------------------------------------------------


def run_plan(tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = job_environ(tmp_path, **extra)
    command = [sys.executable, str(PLAN), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, check=False)


def run_plan_job(tmp_path: Path, node: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """`plan.py job` as the batch script on `node` runs it (this test process owns the claims)."""
    owner, plan_file = str(os.getpid()), str(tmp_path / "job/plan")
    return run_plan(tmp_path, "job", "--node", node, "--owner", owner, "--plan", plan_file, **extra)


def test_dry_run_prints_the_plan_and_the_vllm_command(tmp_path: Path) -> None:
    user_env(tmp_path, LLM_URL="", LLM_MODEL="google/gemma-3-27b-it", LLM_TENSOR_PARALLEL_SIZE="2")
    done = run_plan_job(tmp_path, "gpu7", CUDA_VISIBLE_DEVICES="0,1,2,3", DRY_RUN="1")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    env = read_env(tmp_path / "job/job.env")
    llm = int(env["LLM_URLS"].split(":")[2].split("/")[0])
    lines = done.stdout.splitlines()
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d unmute\[42\]: placement on gpu7 \(GPUs from SLURM: 0,1,2,3\):", lines[1]
    )
    assert lines[2:] == [
        f"  stt    CUDA_VISIBLE_DEVICES=0          port {env['STT_PORT']:<6} memory batch 256",
        f"  tts    CUDA_VISIBLE_DEVICES=1          port {env['TTS_PORT']:<6} memory batch 16",
        f"  llm    CUDA_VISIBLE_DEVICES=2,3        port {llm:<6} memory 0.90, tensor parallel 2",
        "  vllm command: CUDA_VISIBLE_DEVICES=2,3 vllm serve google/gemma-3-27b-it --host 127.0.0.1 "
        f"--port {llm} --tensor-parallel-size 2 --gpu-memory-utilization 0.90 --max-model-len 8192 "
        "--limit-mm-per-prompt '{\"image\": 0}' --enable-auto-tool-choice --tool-call-parser pythonic "
        "--chat-template /opt/unmute/llm/gemma3-tools.jinja",
    ]
    assert "job directory" in lines[0] and "starting" not in done.stdout


def test_two_jobs_from_one_env_at_once_get_their_own_ports_and_one_says_so(tmp_path: Path) -> None:
    user_env(tmp_path)
    (tmp_path / "job2").mkdir()
    owner = str(os.getpid())  # alive: both jobs' claims hold
    env = job_environ(tmp_path)
    jobs = [
        subprocess.Popen(
            [sys.executable, str(PLAN), "job", "--node", "n", "--owner", owner, "--plan", str(job / "plan")],
            env={**env, "JOB_DIR": str(job)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for job in (tmp_path / "job", tmp_path / "job2")
    ]
    outputs = [job.communicate(timeout=60) for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], outputs
    ports = [
        {k: v for k, v in read_env(d / "job.env").items() if "PORT" in k}
        for d in (tmp_path / "job", tmp_path / "job2")
    ]
    assert not set(ports[0].values()) & set(ports[1].values()), ports
    assert sum("is taken on n; using" in out for out, _ in outputs) == 1, outputs
    released = run_plan(tmp_path, "release", "--owner", owner)
    assert released.returncode == 0 and not list((tmp_path / "claims").glob("*/owner"))


def test_a_plan_that_does_not_fit_is_one_line_on_stderr_and_exit_1(tmp_path: Path) -> None:
    user_env(tmp_path, LLM_URL="", LLM_TENSOR_PARALLEL_SIZE="8")
    done = run_plan_job(tmp_path, "gpu7", CUDA_VISIBLE_DEVICES="0,1,2,3", DRY_RUN="1", SLURM_GPUS_ON_NODE="4")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == (
        "no GPU placement for gpu7 (GPUs: 0,1,2,3, 4 from SLURM): LLM_TENSOR_PARALLEL_SIZE=8 needs 8 GPUs, "
        "but the job has 4: submit with --gres=gpu:8 or more\n"
    )
    assert not (tmp_path / "job/plan").exists()


# ---- a node's step, the replicas' URLs, the announcement ----------------------------------------------


def test_a_node_plans_its_replicas_on_every_address_and_where_they_will_listen(tmp_path: Path) -> None:
    job = job_module.Job.from_environ(job_environ(tmp_path, CUDA_VISIBLE_DEVICES="0,1,2"), "n2")
    plan.plan_node(job, os.getpid(), tmp_path / "n2.plan")
    records = plan.read_plan(tmp_path / "n2.plan")
    address = records["address"][0]
    ports = {r.split()[0]: r.split()[2] for r in records["instance"]}
    assert sorted(ports) == ["stt", "tts", "tts2"]
    assert records["endpoint"] == [
        f"stt ws://{address}:{ports['stt']}",
        f"tts ws://{address}:{ports['tts']}",
        f"tts ws://{address}:{ports['tts2']}",
    ]


def test_the_replicas_of_every_node_reach_job_env(tmp_path: Path) -> None:
    job = job_module.Job.from_environ(job_environ(tmp_path), "n1")
    (tmp_path / "job/nodes").mkdir()
    (tmp_path / "job/nodes/n1.endpoints").write_text("stt ws://10.0.0.1:3001\ntts ws://10.0.0.1:3003\n")
    (tmp_path / "job/nodes/n2.endpoints").write_text(
        "stt ws://10.0.0.2:3001\ntts ws://10.0.0.2:3003\ntts ws://10.0.0.2:20001\n"
    )
    (tmp_path / "job/plan").write_text("node n1\nnode n2\n")
    plan.write_private(job.job_env, ["ACCESS_TOKEN=t"])
    plan.write_urls(job, tmp_path / "job/plan")
    assert job.job_env.read_text().splitlines() == [
        "ACCESS_TOKEN=t",
        "STT_PORT=3001",
        "TTS_PORT=3003",
        "UNMUTE_HOST=10.0.0.1",
        "STT_URLS=ws://10.0.0.1:3001,ws://10.0.0.2:3001",
        "TTS_URLS=ws://10.0.0.1:3003,ws://10.0.0.2:3003,ws://10.0.0.2:20001",
    ]
    assert (tmp_path / "job/endpoints").read_text().count("\n") == 5


def test_the_announcement_has_the_tunnel_and_the_url_with_the_token(tmp_path: Path) -> None:
    env, _ = plan_job(tmp_path)
    port = env["ORCHESTRATOR_PORT"]
    done = run_plan(
        tmp_path,
        "announce",
        "--node",
        "node1",
        "--plan",
        str(tmp_path / "job/plan"),
        USER="ada",
        LOGIN_HOST="login.example",
    )
    assert done.returncode == 0, done.stderr
    assert f"\n    ssh -N -L {port}:node1:{port} ada@login.example\n" in done.stdout
    assert f"\n  then open  http://localhost:{port}/?token={env['ACCESS_TOKEN']}\n" in done.stdout
    assert "scancel 42 stops everything" in done.stdout
