#!/usr/bin/env python3
"""The SLURM job's plan: what slurm/instances.sbatch and its steps (slurm/node-services) start,
where, on which ports, with which settings. They supervise (srun, Apptainer instances, the
ready-waits, watching, stopping); this decides, before anything starts, and writes it down.

    plan.py job --node N --owner PID --plan FILE    the batch script: checks the runtime, the
        SIFs and the nodes (job.py); on one node plans its GPUs (placement.py); claims the
        ports (port_claims.py); makes the certificate (certificate.py); writes job.env (fresh
        secrets, mode 600) and the plan file
    plan.py node --node N --owner PID --plan FILE   a node's step of a multi-node job: its
        GPUs, its ports, its plan file with where its replicas will listen
    plan.py urls --node N --plan FILE               multi-node, once every node's replicas are
        ready: the endpoints file and the replicas' URLs in job.env
    plan.py announce --node N --plan FILE           how to open the ready job (for its output)
    plan.py release --owner PID                     the port claims of PID (when it ends)

Settings come from the environment the batch script exports (UNMUTE_DIR, JOB_DIR, JOB_ID,
RUNTIME, SIF_DIR, DRY_RUN, LOGIN_HOST; ENV_FILE, PORT_CLAIMS_DIR and SLURM's own) and the
user's settings file (ENV_FILE, else $UNMUTE_DIR/.env, else .env.example; a variable set in
the environment wins). PID owns the claims: the shell that lives as long as the ports' users.

The plan file (JOB_DIR/plan, JOB_DIR/nodes/<node>.plan) is for bash's `read -r key ...`: one
record per line, fields separated by one space, the last field of a record may hold spaces:

    node NAME                                   each node of the job, in SLURM's order
    instance NAME SERVICE PORT DEVICES MEMORY   DEVICES: CUDA ids (comma-separated) or -
    env NAME KEY=VALUE                          what sets the instance apart from job.env
    bind NAME SOURCE:TARGET:ro                  a directory its Apptainer instance sees
    url URL                                     the orchestrator's, without the token
    fingerprint SHA256                          its certificate's, when it serves HTTPS
    address ADDRESS                             this node's, as the other nodes reach it
    endpoint SERVICE URL                        where an instance listens once ready

Messages for the job's output go to stdout; an error is one line on stderr and exit status 1,
which the batch script reports as the job's error. Standard library only (Python 3.8 or later):
the job runs it with the node's python3, or the project's for RUNTIME=host.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import placement
from certificate import TLS_MOUNT, prepare_certificate, tls_mode
from job import Job, Settings, check_runtime, fqdn, job_nodes, make_output_private, node_address, node_gpus
from placement import Instance, PlanError
from port_claims import DEFAULT_DIRECTORY, ClaimError, PortClaims

#: What the GPU plan reads of the user's settings.
PLACEMENT_KEYS = (
    "STT_GPUS",
    "TTS_GPUS",
    "LLM_GPUS",
    "LLM_TENSOR_PARALLEL_SIZE",
    "LLM_GPU_MEMORY_UTILIZATION",
    "STT_MODEL",
    "STT_BATCH_SIZE",
    "TTS_MODEL",
    "TTS_BATCH_SIZE",
)


ORCHESTRATOR = Instance("orchestrator", "orchestrator", (), "-")


@dataclass(frozen=True)
class Placed:
    """An instance of the plan with the CUDA devices and the port it got."""

    instance: Instance
    devices: str  # CUDA_VISIBLE_DEVICES ('' for none)
    port: int

    @property
    def name(self) -> str:
        return self.instance.name

    @property
    def service(self) -> str:
        return self.instance.service

    def records(self, runtime: str, tls_dir: Path | None = None) -> list[str]:
        """Its `instance` record, and the `env` and `bind` records that set it apart from the
        job's settings (vLLM's memory share is the batch script's: `auto` is measured at start)."""
        i = self.instance
        env = [f"{i.service.upper()}_PORT={self.port}", f"CUDA_VISIBLE_DEVICES={self.devices}"]
        if i.service == "llm":
            env.append(f"LLM_TENSOR_PARALLEL_SIZE={len(i.gpus)}")
        binds = []
        if i.service == "orchestrator" and tls_dir:
            seen = str(tls_dir) if runtime == "host" else TLS_MOUNT
            env += [
                f"ORCHESTRATOR_TLS_CERT_FILE={seen}/cert.pem",
                f"ORCHESTRATOR_TLS_KEY_FILE={seen}/key.pem",
            ]
            binds = [f"{tls_dir}:{TLS_MOUNT}:ro"] if runtime != "host" else []
        return [
            f"instance {i.name} {i.service} {self.port} {self.devices or '-'} {i.memory}",
            *(f"env {i.name} {setting}" for setting in env),
            *(f"bind {i.name} {bind}" for bind in binds),
        ]

    def endpoint(self, address: str) -> str:
        """Its `service url` line, for the orchestrator's replica lists."""
        if self.service == "llm":
            return f"llm http://{address}:{self.port}/v1"
        return f"{self.service} ws://{address}:{self.port}"


def place(job: Job) -> list[tuple[Instance, str]]:
    """This node's model instances and their CUDA devices, or PlanError with the reason."""
    gpus = node_gpus(job.environ)
    ids = [part for part in gpus.split(",") if part.strip()]
    overrides = {key: job.settings.get(key) for key in PLACEMENT_KEYS}
    try:
        instances = placement.plan(len(ids), overrides, job.settings.external_llm)
    except PlanError as exc:
        from_slurm = job.environ.get("SLURM_GPUS_ON_NODE")
        shown = gpus + (f", {from_slurm} from SLURM" if from_slurm else "")
        raise PlanError(f"no GPU placement for {job.node} (GPUs: {shown}): {exc}") from None
    return [(instance, instance.devices(ids)) for instance in instances]


def claim_ports(job: Job, owner: int, instances: Sequence[tuple[Instance, str]]) -> list[Placed]:
    """A port for each instance, claimed on this node: the first of each service asks for
    its .env port (another is taken, and said so, when that one is not free), replicas any."""
    claims = PortClaims(Path(job.environ.get("PORT_CLAIMS_DIR") or DEFAULT_DIRECTORY), owner, job.job_id)
    placed = []
    with claims.locked():
        for instance, devices in instances:
            wanted = port_setting(job.settings, instance) if instance.name == instance.service else None
            try:
                port = claims.pick(wanted)
            except ClaimError:
                raise ClaimError(f"no free port for {instance.name} on {job.node}") from None
            if wanted is not None and port != wanted:
                job.log(f"port {wanted} for {instance.name} is taken on {job.node}; using {port}")
            placed.append(Placed(instance, devices, port))
    return placed


def port_setting(settings: Settings, instance: Instance) -> int | None:
    """The port the settings ask for the service (STT_PORT, ...), if any."""
    key = f"{instance.service.upper()}_PORT"
    value = settings.get(key)
    if not value:
        return None
    if not value.isdigit():
        raise PlanError(f"{key}={value}: expected a port number")
    return int(value)


def job_env_lines(
    settings: Settings, orchestrator_port: int, multi_node: bool, new_secret: Callable[[], str]
) -> list[str]:
    """job.env: the user's settings (none of their secrets, ports or URLs), fresh secrets, the
    orchestrator's port, the addresses to bind (a multi-node job's replicas: every address,
    for the orchestrator on another node; the service key guards them)."""
    bind = "0.0.0.0" if multi_node else "127.0.0.1"
    lines = [
        *settings.passed_lines(),
        f"ORCHESTRATOR_PORT={orchestrator_port}",
        f"SERVICE_API_KEY={new_secret()}",
        f"LLM_API_KEY={new_secret()}",
        f"ACCESS_TOKEN={new_secret()}",
        "HF_HUB_OFFLINE=1",
        f"STT_HOST={bind}",
        f"TTS_HOST={bind}",
        f"LLM_HOST={bind}",
        "ORCHESTRATOR_HOST=0.0.0.0",
    ]
    if settings.external_llm:
        lines.append(f"LLM_URL={settings.get('LLM_URL')}")
    return lines


def replica_lines(endpoints: Sequence[str], external_llm: bool) -> list[str]:
    """job.env's lists of every replica's URL, from the `service url` endpoint lines."""
    services = ("stt", "tts") if external_llm else ("stt", "tts", "llm")
    by_service = {
        s: [line.split(" ", 1)[1] for line in endpoints if line.split(" ", 1)[0] == s] for s in services
    }
    return [f"{s.upper()}_URLS={','.join(urls)}" for s, urls in by_service.items()]


def first_node_lines(endpoints: Sequence[str]) -> list[str]:
    """STT_PORT, TTS_PORT and UNMUTE_HOST of a node's first STT and TTS (for tests/deployment)."""
    lines = set()
    for service in ("stt", "tts"):
        urls = [e.split(" ", 1)[1] for e in endpoints if e.startswith(f"{service} ")]
        found = re.match(r"ws://([^:]+):(\d+)$", urls[0]) if urls else None
        if found:
            lines |= {f"{service.upper()}_PORT={found.group(2)}", f"UNMUTE_HOST={found.group(1)}"}
    return sorted(lines)


def write_private(path: Path, lines: Iterable[str], append: bool = False) -> None:
    """Lines to a file only its owner reads (mode 600)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC), 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.writelines(f"{line}\n" for line in lines)
    path.chmod(0o600)


def vllm_command(
    llm: Placed, settings: Settings, host: str, unmute_dir: Path, environ: Mapping[str, str]
) -> str:
    """What apptainer/vllm.def's %startscript runs for this instance (its key stays in the
    environment), with the tool-call flags that the image's services/llm/tool-flags.sh makes."""
    tool_env = {key: settings.get(key) for key in ("LLM_MODEL", "LLM_TOOL_CALL_PARSER", "LLM_CHAT_TEMPLATE")}
    script = unmute_dir / "services/llm/tool-flags.sh"
    made = subprocess.run(
        ["bash", str(script)], env={**environ, **tool_env}, capture_output=True, text=True, check=False
    )
    if made.returncode != 0:
        raise PlanError(f"{script} failed: {made.stderr.strip()}")
    flags = made.stdout.split()
    model, max_len = (
        settings.get("LLM_MODEL", "google/gemma-3-12b-it"),
        settings.get("LLM_MAX_MODEL_LEN", "8192"),
    )
    command = (
        f"CUDA_VISIBLE_DEVICES={llm.devices} vllm serve {model} --host {host} --port {llm.port} "
        f"--tensor-parallel-size {len(llm.instance.gpus)} --gpu-memory-utilization {llm.instance.memory} "
        f"""--max-model-len {max_len} --limit-mm-per-prompt '{{"image": 0}}'"""
    )
    return " ".join([command, *flags])


def plan_table(job: Job, models: Sequence[Placed], host: str) -> list[str]:
    """The placement plan as the user reads it, with the vLLM command it would run."""
    rows = [
        f"  {p.name:<6} CUDA_VISIBLE_DEVICES={p.devices or '(none)':<10} port {p.port:<6} "
        + p.instance.summary
        for p in models
    ]
    rows += [
        f"  vllm command: {vllm_command(p, job.settings, host, job.unmute_dir, job.environ)}"
        for p in models
        if p.service == "llm"
    ]
    return rows


def show_plan(job: Job, models: Sequence[Placed], host: str) -> None:
    job.log(f"placement on {job.node} (GPUs from SLURM: {node_gpus(job.environ)}):")
    print("\n".join(plan_table(job, models, host)), flush=True)


def plan_job(
    job: Job, owner: int, plan_file: Path, run: Callable[..., subprocess.CompletedProcess] = subprocess.run
) -> None:
    """`plan.py job`: everything the batch script needs before it starts anything."""
    make_output_private(job.environ, run)
    check_runtime(job)
    nodes = job_nodes(job, run)
    mode = tls_mode(job.settings)
    one_node = len(nodes) == 1  # else the nodes' steps plan their replicas
    *models, orchestrator = claim_ports(job, owner, [*(place(job) if one_node else []), (ORCHESTRATOR, "")])
    fingerprint = "" if mode == "off" else prepare_certificate(job, mode, run)
    if fingerprint:
        job.log(f"the orchestrator serves HTTPS; certificate SHA-256 fingerprint {fingerprint}")
    write_job_env(job, models, orchestrator, one_node)
    write_private(plan_file, job_records(job, nodes, [*models, orchestrator], fingerprint))
    job.log(f"job directory {job.job_dir}; runtime {job.runtime}; orchestrator port {orchestrator.port}")
    if one_node:
        show_plan(job, models, "127.0.0.1")


def write_job_env(job: Job, models: Sequence[Placed], orchestrator: Placed, one_node: bool) -> None:
    """job.env (and, on one node, the endpoints file: the replicas are this node's, on loopback)."""
    env = job_env_lines(job.settings, orchestrator.port, not one_node, lambda: secrets.token_urlsafe(32))
    if one_node:
        endpoints = [p.endpoint("127.0.0.1") for p in models]
        (job.job_dir / "endpoints").write_text("".join(f"{e}\n" for e in endpoints))
        env += [f"{p.service.upper()}_PORT={p.port}" for p in models if p.name in ("stt", "tts")]
        env += replica_lines(endpoints, job.settings.external_llm)
    write_private(job.job_env, env)


def job_records(job: Job, nodes: Sequence[str], placed: Sequence[Placed], fingerprint: str) -> list[str]:
    """The job's plan file: its nodes, its instances, the orchestrator's URL (and certificate)."""
    tls_dir = job.job_dir / "tls" if fingerprint else None
    orchestrator = placed[-1]
    records = [f"node {node}" for node in nodes]
    records += [record for p in placed for record in p.records(job.runtime, tls_dir)]
    records.append(f"url {'https' if fingerprint else 'http'}://{job.node}:{orchestrator.port}/")
    return records + ([f"fingerprint {fingerprint}"] if fingerprint else [])


def plan_node(job: Job, owner: int, plan_file: Path) -> None:
    """`plan.py node`: one node's replicas in a multi-node job, listening on every address."""
    models = claim_ports(job, owner, place(job))
    address = node_address()
    records = [record for p in models for record in p.records(job.runtime)] + [f"address {address}"]
    records += [f"endpoint {p.endpoint(address)}" for p in models]
    write_private(plan_file, records)
    show_plan(job, models, "0.0.0.0")


def read_plan(plan_file: Path) -> dict[str, list[str]]:
    """The plan file's records: key -> the rest of each of its lines."""
    records: dict[str, list[str]] = {}
    for line in plan_file.read_text().splitlines():
        key, _, rest = line.partition(" ")
        records.setdefault(key, []).append(rest)
    return records


def write_urls(job: Job, plan_file: Path) -> None:
    """`plan.py urls`: every node's endpoints into JOB_DIR/endpoints and job.env's URL lists,
    with the first node's STT and TTS ports and address (for tests/deployment)."""
    first = read_plan(plan_file)["node"][0]
    nodes = job.job_dir / "nodes"
    endpoints = [line for path in sorted(nodes.glob("*.endpoints")) for line in path.read_text().splitlines()]
    (job.job_dir / "endpoints").write_text("".join(f"{e}\n" for e in endpoints))
    first_lines = (nodes / f"{first}.endpoints").read_text().splitlines()
    lines = first_node_lines(first_lines) + replica_lines(endpoints, job.settings.external_llm)
    write_private(job.job_env, lines, append=True)


def announcement(job: Job, plan_file: Path) -> str:
    """`plan.py announce`: how to reach the ready job, for its output (readable by the user only)."""
    plan = read_plan(plan_file)
    port = next(rest.split(" ")[2] for rest in plan["instance"] if rest.startswith("orchestrator "))
    env = dict(line.split("=", 1) for line in job.job_env.read_text().splitlines() if "=" in line)
    user, login = job.environ.get("USER") or "you", job.environ.get("LOGIN_HOST") or "<login node>"
    token = env["ACCESS_TOKEN"]
    tunnel = f"ssh -N -L {port}:{job.node}:{port} {user}@{login}"
    stop = f"  (this output file is readable by you only; scancel {job.job_id} stops everything)"
    if "fingerprint" not in plan:
        return (
            f"\n  Unmute is ready on {job.node}. From your machine:\n\n    {tunnel}\n\n"
            f"  then open  http://localhost:{port}/?token={token}\n\n{stop}\n"
        )
    return (
        f"\n  Unmute is ready on {job.node}, over HTTPS. From the cluster's network open\n\n"
        f"    https://{fqdn() or job.node}:{port}/?token={token}\n\n"
        f"  or through a tunnel ({tunnel})\n  https://localhost:{port}/?token={token}\n\n"
        f"  The certificate's SHA-256 fingerprint is\n    {plan['fingerprint'][0]}\n"
        "  (a self-signed one: check that the browser shows this fingerprint before you accept it)\n\n"
        f"{stop}\n"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="slurm/plan.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("job", "node", "urls", "announce", "release"):
        command = commands.add_parser(name)
        if name != "release":
            command.add_argument("--node", required=True, help="this node's name")
            command.add_argument("--plan", type=Path, required=True, help="the plan file")
        if name in ("job", "node", "release"):
            command.add_argument("--owner", type=int, required=True, help="the pid that owns the port claims")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] = os.environ) -> None:
    args = parse_args(argv)
    try:
        if args.command == "release":
            claims = Path(environ.get("PORT_CLAIMS_DIR") or DEFAULT_DIRECTORY)
            PortClaims(claims, args.owner, "").release()
            return
        job = Job.from_environ(environ, args.node)
        if args.command == "job":
            plan_job(job, args.owner, args.plan)
        elif args.command == "node":
            plan_node(job, args.owner, args.plan)
        elif args.command == "urls":
            write_urls(job, args.plan)
        else:
            print(announcement(job, args.plan), flush=True)
    except (PlanError, ClaimError) as exc:
        print(exc, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
