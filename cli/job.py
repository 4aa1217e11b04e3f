"""One job as the commands see it: SLURM's record, its job directory, and from those its
phase, its URL with the token, its failure and the orchestrator's own status."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass

from cli import slurm
from cli.jobdir import JobDir, tail
from cli.model import Instance, JobStatus, OrchestratorStatus, Phase
from cli.project import Project, resolve_job

JOB = "job"  # the batch script's own events (docs/cli.md)


@dataclass
class Job:
    """A job id with what SLURM and its directory say now (call `refresh` to look again)."""

    id: str
    project: Project
    slurm: slurm.SlurmJob
    dir: JobDir

    @classmethod
    def load(cls, project: Project, job_id: str) -> Job:
        return cls(job_id, project, slurm.show(job_id), JobDir(project.job_dir(job_id)))

    @classmethod
    def chosen(cls, given: str | None) -> Job:
        """The job a command was given, else the latest `unmute up` started."""
        return cls.load(Project.find(), resolve_job(given))

    def refresh(self) -> None:
        self.slurm = slurm.show(self.id)

    @property
    def phase(self) -> Phase:
        if self.slurm.state == "PENDING":
            return "queued"
        if self.dir.last("stopped", JOB) or (not self.slurm.active and self.slurm.state != "UNKNOWN"):
            return "ended"
        if self.dir.last("stopping", JOB) or self.dir.last("error", JOB):
            return "stopping"
        if self.dir.last("serving"):
            return "ready"
        if self.slurm.state == "UNKNOWN" and not self.dir.events():
            return "ended"
        return "starting"

    @property
    def node(self) -> str | None:
        """Where the orchestrator runs: the batch node."""
        serving = self.dir.last("serving")
        if serving is not None:
            return serving.node
        return self.slurm.nodes[0] if self.slurm.nodes else None

    def token(self) -> str | None:
        return self.dir.settings().get("ACCESS_TOKEN") or None

    def port(self) -> str | None:
        return self.dir.settings().get("ORCHESTRATOR_PORT") or None

    def url_with_token(self) -> str | None:
        """The orchestrator's own URL with the token (reachable from the cluster's network)."""
        url, token = self.dir.serving_url(), self.token()
        return f"{url}?token={token}" if url and token else None

    def failure(self) -> tuple[str | None, str | None]:
        """Why the job ended or is ending, in its own words, and which instance failed."""
        error = self.dir.last("error", JOB)  # a node's own failure does not end the job
        failed = self.dir.last("failed")
        return (error.text if error else None), (failed.subject if failed else None)

    def failure_report(self, lines: int = 20) -> str:
        """The failure for a person: what, and the end of the failed instance's log (or of the
        job's output when no instance is to blame)."""
        error, instance = self.failure()
        text = (
            f"job {self.id} ended {self.slurm.state}"
            if not self.slurm.active
            else f"job {self.id} is failing"
        )
        text += f": {error}" if error else ""
        logs = self.dir.service_logs(instance) if instance else []
        if not logs and self.output() is not None:
            logs = [self.output()]  # type: ignore[list-item]
        for log in logs[:2]:
            end = tail(log, lines)
            if end:
                text += f"\nlast lines of {log}:\n" + "\n".join(f"  | {line}" for line in end.splitlines())
        return text

    def output(self):
        """The job's output file (the batch script's messages)."""
        if self.slurm.stdout is not None and self.slurm.stdout.is_file():
            return self.slurm.stdout
        candidate = self.project.jobs_dir / f"unmute-{self.id}.out"
        if candidate.is_file():
            return candidate
        candidate = self.project.root / f"unmute-{self.id}.out"
        return candidate if candidate.is_file() else None

    def orchestrator_status(self) -> tuple[OrchestratorStatus | None, str | None]:
        """/api/status read with the job's token (in a header: never in a command line)."""
        url, token = self.dir.serving_url(), self.token()
        if url is None or token is None:
            return None, None
        context = None
        if url.startswith("https:"):
            context = ssl.create_default_context()
            cert = self.dir.cert()
            if cert is not None:
                context.load_verify_locations(cafile=str(cert))
        request = urllib.request.Request(f"{url}api/status", headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=5, context=context) as response:
                return OrchestratorStatus.model_validate(json.load(response)), None
        except (OSError, ValueError) as exc:
            return None, f"{url}api/status: {exc}"

    def status(self) -> JobStatus:
        """Everything `unmute status` shows about this job."""
        phase = self.phase
        backends = None
        orchestrator, problem = self.orchestrator_status() if phase == "ready" else (None, None)
        if orchestrator is not None:
            backends = orchestrator.backends
        error, instance = self.failure()
        return JobStatus(
            job_id=self.id,
            state=self.slurm.state,
            phase=phase,
            reason=self.slurm.reason if phase == "queued" else None,
            nodes=self.slurm.nodes,
            time_left_s=self.slurm.time_left_s,
            time_limit_s=self.slurm.time_limit_s,
            job_dir=str(self.dir.path),
            url=self.dir.serving_url() if phase == "ready" else None,
            tls_fingerprint_sha256=self.dir.fingerprint(),
            instances=[
                Instance(
                    node=s.node,
                    instance=s.instance,
                    service=s.service,
                    state=s.state,
                    detail=s.detail,
                    since=s.since,
                )
                for s in self.dir.instances()
                if s.service in ("stt", "tts", "llm", "orchestrator")
            ],
            backends=backends,
            sessions=orchestrator.sessions if orchestrator else None,
            max_sessions=orchestrator.max_sessions if orchestrator else None,
            orchestrator_error=problem,
            error=error,
            failed_instance=instance,
        )
