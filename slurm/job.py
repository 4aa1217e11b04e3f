"""What the SLURM job is, as slurm/plan.py sees it: the batch script's environment, the user's
settings, this node and the job's nodes; and the checks that end a job before anything starts
(the runtime, the SIFs, the nodes' names). Standard library only."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from placement import PlanError

#: The user's settings that never reach job.env: the job chooses the ports, makes fresh
#: secrets, and sets the URLs, the TLS files and the GPUs of each instance itself.
NOT_PASSED = re.compile(
    r"(STT_PORT|TTS_PORT|LLM_PORT|ORCHESTRATOR_PORT|SERVICE_API_KEY|ACCESS_TOKEN|LLM_API_KEY|LLM_URLS?"
    r"|STT_URLS?|TTS_URLS?|HF_TOKEN|ORCHESTRATOR_TLS.*|CUDA_VISIBLE_DEVICES)="
)
SETTING_LINE = re.compile(r"[A-Z_][A-Z0-9_]*=")
#: Each service's SIF (slurm/build's names).
IMAGE_OF = {"stt": "stt", "tts": "tts", "llm": "vllm", "orchestrator": "orchestrator"}


class Settings:
    """The user's settings: a variable set in the environment, else the file's last KEY=value
    line of it (plain lines, no quotes: the file compose and pydantic-settings also read)."""

    def __init__(self, path: Path, environ: Mapping[str, str]) -> None:
        self.path = path
        self.environ = environ
        try:
            self.lines = path.read_text().splitlines()
        except OSError:
            raise PlanError(f"no settings file ({path})") from None

    def get(self, key: str, default: str = "") -> str:
        """The value of KEY, or default when it is empty everywhere."""
        if self.environ.get(key):
            return self.environ[key]
        values = [line[len(key) + 1 :] for line in self.lines if line.startswith(f"{key}=")]
        return (values[-1] if values else "") or default

    @property
    def external_llm(self) -> bool:
        """The LLM runs elsewhere (LLM_URL, or echo): no node starts vLLM."""
        return bool(self.get("LLM_URL"))

    def passed_lines(self) -> list[str]:
        """The file's settings lines that job.env passes on to every service."""
        return [line for line in self.lines if SETTING_LINE.match(line) and not NOT_PASSED.match(line)]


@dataclass(frozen=True)
class Job:
    """What every subcommand knows: the job, this node, the user's settings."""

    node: str
    job_id: str
    job_dir: Path
    unmute_dir: Path
    runtime: str
    sif_dir: Path
    dry_run: bool
    settings: Settings
    environ: Mapping[str, str] = field(repr=False)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], node: str) -> Job:
        """The job the batch script describes in `environ` (see the module docstring)."""

        def required(key: str) -> str:
            if not environ.get(key):
                raise PlanError(f"{key} is not set (slurm/plan.py runs inside slurm/instances.sbatch)")
            return environ[key]

        unmute_dir = Path(required("UNMUTE_DIR"))
        return cls(
            node=node,
            job_id=required("JOB_ID"),
            job_dir=Path(required("JOB_DIR")),
            unmute_dir=unmute_dir,
            runtime=required("RUNTIME"),
            sif_dir=Path(required("SIF_DIR")),
            dry_run=environ.get("DRY_RUN") == "1",
            settings=Settings(settings_file(environ, unmute_dir), environ),
            environ=environ,
        )

    @property
    def job_env(self) -> Path:
        return self.job_dir / "job.env"

    def log(self, message: str) -> None:
        """A line of the job's output, as the batch script's own `log` writes them."""
        print(f"{time.strftime('%H:%M:%S')} unmute[{self.job_id}]: {message}", flush=True)

    def sif(self, service: str) -> Path:
        return self.sif_dir / f"{IMAGE_OF[service]}.sif"


def settings_file(environ: Mapping[str, str], unmute_dir: Path) -> Path:
    """ENV_FILE, else the checkout's .env, else its .env.example."""
    if environ.get("ENV_FILE"):
        return Path(environ["ENV_FILE"])
    env = unmute_dir / ".env"
    return env if env.is_file() else unmute_dir / ".env.example"


def check_runtime(job: Job) -> None:
    """The runtime exists here and can run what the settings ask for."""
    if job.runtime == "host":
        if not (job.settings.external_llm or job.dry_run):
            raise PlanError("RUNTIME=host does not start vLLM: set LLM_URL to a running endpoint (or echo)")
    elif job.runtime == "apptainer":
        if shutil.which("apptainer", path=job.environ.get("PATH")) is None:
            raise PlanError("apptainer not found; load its module or use RUNTIME=host")
        check_images(job)
    else:
        raise PlanError(f"RUNTIME must be apptainer or host, not '{job.runtime}'")


def check_images(job: Job) -> None:
    """Every SIF this job will start is there."""
    services = (
        ["stt", "tts", "orchestrator"] if job.settings.external_llm else ["stt", "tts", "llm", "orchestrator"]
    )
    missing = [IMAGE_OF[s] for s in services if not job.sif(s).is_file()]
    if missing:
        raise PlanError(
            f"no {' '.join(m + '.sif' for m in missing)} in SIF_DIR={job.sif_dir}: "
            f"build them with 'slurm/build {' '.join(missing)}' (or point SIF_DIR at them)"
        )


def job_nodes(job: Job, run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> list[str]:
    """The allocation's nodes, in SLURM's order; with more than one, each must resolve."""
    nodelist = job.environ.get("SLURM_JOB_NODELIST")
    if not nodelist:
        return [job.node]
    try:
        shown = run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=False)
    except OSError as exc:
        raise PlanError(f"cannot list the job's nodes ({nodelist}) with scontrol: {exc}") from None
    nodes = shown.stdout.split()
    if shown.returncode != 0 or not nodes:
        raise PlanError(f"scontrol cannot list the job's nodes ({nodelist}): {shown.stderr.strip()}")
    if len(nodes) > 1:
        for node in nodes:
            if not resolves(node):
                raise PlanError(
                    f"node {node} has no address (name resolution failed): cannot reach its replicas"
                )
    return nodes


def resolves(host: str) -> bool:
    try:
        return bool(socket.getaddrinfo(host, None))
    except OSError:
        return False


def make_output_private(
    environ: Mapping[str, str], run: Callable[..., subprocess.CompletedProcess] = subprocess.run
) -> None:
    """The job's output will hold the access token: make it the user's alone."""
    job_id = environ.get("SLURM_JOB_ID")
    if not job_id or shutil.which("scontrol") is None:
        return
    shown = run(["scontrol", "show", "job", job_id], capture_output=True, text=True, check=False)
    match = re.search(r"^\s*StdOut=(.+)$", shown.stdout, re.M)
    if match and Path(match.group(1)).is_file():
        Path(match.group(1)).chmod(0o600)


def node_gpus(environ: Mapping[str, str]) -> str:
    """The GPU ids SLURM gave this job on this node."""
    return environ.get("CUDA_VISIBLE_DEVICES") or environ.get("SLURM_JOB_GPUS") or ""


def fqdn() -> str:
    """This host's full name, as `hostname -f` gives it ('' if it has none)."""
    try:
        return socket.getaddrinfo(socket.gethostname(), None, flags=socket.AI_CANONNAME)[0][3]
    except (OSError, IndexError):
        return ""


def node_address() -> str:
    """This node's address as the other nodes reach it."""
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError as exc:
        raise PlanError(f"this node's name ({socket.gethostname()}) has no address: {exc}") from None
