"""`unmute status --json`: what it prints, as pydantic models. The JSON schema generated from
them is docs/unmute-status.schema.json (`python -m cli.schema`); a test holds the two equal
and checks real output against the file. Add fields freely; never rename or drop one
without raising SCHEMA_VERSION."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1

Phase = Literal["queued", "starting", "ready", "stopping", "ended"]


class Replica(BaseModel):
    """One replica of a backend, as the orchestrator sees it (its /api/status)."""

    model_config = ConfigDict(extra="ignore")

    url: str = Field(description="where it listens, without credentials")
    healthy: bool
    detail: str | None = Field(None, description="why it is not healthy")
    slots: int | None = Field(None, description="streams it can hold (STT, TTS)")
    free_slots: int | None = Field(None, description="of those, free at its last report")


class Backend(BaseModel):
    """One kind of backend (stt, tts, llm): ready while one replica is."""

    model_config = ConfigDict(extra="ignore")

    ready: bool
    detail: str | None = Field(None, description="why no replica is ready")
    replicas: list[Replica]
    echo: bool | None = Field(None, description="llm only: the built-in echo responder answers")
    model: str | None = Field(None, description="llm only: the model asked for")


class OrchestratorStatus(BaseModel):
    """The orchestrator's /api/status (read with the job's token)."""

    model_config = ConfigDict(extra="ignore")

    backends: dict[str, Backend]
    sessions: int
    max_sessions: int


class Instance(BaseModel):
    """One instance the job started, from the job's events."""

    node: str
    instance: str = Field(description="stt, tts, tts2, llm, orchestrator, ...")
    service: Literal["stt", "tts", "llm", "orchestrator"]
    state: Literal["starting", "ready", "failed", "stopped"]
    detail: str = Field(description="its port while starting, the time it took when ready, why it failed")
    since: int = Field(description="Unix time of that state")


class JobStatus(BaseModel):
    """One job: SLURM's view, the job's own progress, and the orchestrator's."""

    job_id: str
    state: str = Field(
        description="SLURM's job state (PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT, ...), "
        "UNKNOWN once SLURM has forgotten the job"
    )
    phase: Phase = Field(description="queued, starting, ready, stopping or ended")
    reason: str | None = Field(None, description="why SLURM keeps it queued")
    nodes: list[str]
    time_left_s: int | None = Field(
        None, description="until the time limit; null when not running or unlimited"
    )
    time_limit_s: int | None = None
    job_dir: str
    url: str | None = Field(
        None,
        description="the orchestrator's URL once ready, without the access token "
        "(`unmute url` prints it with the token)",
    )
    tls_fingerprint_sha256: str | None = Field(
        None, description="the orchestrator's certificate, when it serves HTTPS"
    )
    instances: list[Instance]
    backends: dict[str, Backend] | None = Field(
        None, description="stt, tts, llm: null unless the job is ready"
    )
    sessions: int | None = Field(None, description="open conversations")
    max_sessions: int | None = None
    orchestrator_error: str | None = Field(None, description="why /api/status could not be read")
    error: str | None = Field(None, description="why the job ended or is ending, in the job's words")
    failed_instance: str | None = Field(None, description="the instance whose failure ended the job")


class StatusReport(BaseModel):
    """What `unmute status --json` prints: one job, or every job of the user's."""

    schema_version: Literal[1] = SCHEMA_VERSION
    jobs: list[JobStatus]
