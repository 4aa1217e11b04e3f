"""What a job wrote to its directory (the format is in docs/cli.md): its settings, the
events of its progress, its certificate and its logs."""

from __future__ import annotations

import hashlib
import ssl
from dataclasses import dataclass
from pathlib import Path

from cli.errors import CliError


@dataclass(frozen=True)
class Event:
    """One line of JOB_DIR/events/<writer>: when, where, what happened to which instance."""

    time: int
    node: str
    kind: str  # starting, ready, failed, error, serving, stopping, stopped
    subject: str  # an instance (stt, tts2, llm, orchestrator) or "-" for the job
    text: str
    writer: str  # "job" (the batch script), "node-<node>" or "orchestrator-<node>" (srun steps)


@dataclass(frozen=True)
class InstanceState:
    """The latest news of one instance on one node."""

    node: str
    instance: str
    state: str  # starting, ready, failed, stopped
    detail: str
    since: int

    @property
    def service(self) -> str:
        """The service it is a replica of: tts2 is a tts."""
        return self.instance.rstrip("0123456789")


class JobDir:
    """A job directory, read-only: nothing here changes what the job does."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def exists(self) -> bool:
        return self.path.is_dir()

    def settings(self) -> dict[str, str]:
        """job.env: the job's ports and fresh secrets (mode 600: only its owner reads it)."""
        path = self.path / "job.env"
        try:
            text = path.read_text()
        except FileNotFoundError:
            return {}
        except PermissionError:
            raise CliError(f"cannot read {path}: only the job's owner can (is it your job?)") from None
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

    def events(self) -> list[Event]:
        """Every writer's events, oldest first (a writer's own order is kept for equal times)."""
        found: list[Event] = []
        for path in sorted((self.path / "events").glob("*")):
            try:
                lines = path.read_text().splitlines()
            except OSError:
                continue
            for line in lines:
                fields = line.split("\t")
                if len(fields) == 5 and fields[0].isdigit():
                    found.append(Event(int(fields[0]), *fields[1:], writer=path.name))
        return sorted(found, key=lambda event: event.time)

    def last(self, kind: str, writer: str | None = None) -> Event | None:
        """The latest event of this kind (of this writer's), if any."""
        return next(
            (e for e in reversed(self.events()) if e.kind == kind and writer in (None, e.writer)), None
        )

    def instances(self) -> list[InstanceState]:
        """Each instance's latest state, in the order they started; all stopped once the job is."""
        states: dict[tuple[str, str], InstanceState] = {}
        stopped_nodes: set[str] = set()
        for event in self.events():
            if event.kind in ("starting", "ready", "failed") and event.subject != "-":
                key = (event.node, event.subject)
                states[key] = InstanceState(event.node, event.subject, event.kind, event.text, event.time)
            elif event.kind == "stopped":
                stopped_nodes.add(event.node)  # a node's step, or the whole job on its node
        return [
            InstanceState(s.node, s.instance, "stopped", s.detail, s.since)
            if s.node in stopped_nodes and s.state != "failed"
            else s
            for s in states.values()
        ]

    def serving_url(self) -> str | None:
        """The orchestrator's URL without the token, once the job is ready."""
        serving = self.last("serving")
        return serving.text if serving else None

    def cert(self) -> Path | None:
        """The orchestrator's certificate, when it serves HTTPS."""
        cert = self.path / "tls/cert.pem"
        return cert if cert.is_file() else None

    def fingerprint(self) -> str | None:
        """The certificate's SHA-256 fingerprint, as browsers show it."""
        cert = self.cert()
        if cert is None:
            return None
        digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert.read_text())).hexdigest().upper()
        return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))

    def service_logs(self, name: str) -> list[Path]:
        """The log files of an instance (stt, tts2, orchestrator, ...) on every node, or of a
        node's replicas step (a node name): RUNTIME=host's, Apptainer's, the steps'."""
        logs = self.path / "logs"
        found = [logs / f"{name}.log", logs / f"node-{name}.log"]
        if name == "orchestrator":
            found.append(logs / "orchestrator-step.log")
        instances = self.path / "apptainer/instances/logs"
        found += sorted(instances.glob(f"*/*/unmute-{name}-*.err")) + sorted(
            instances.glob(f"*/*/unmute-{name}-*.out")
        )
        return [path for path in found if path.is_file() and path.stat().st_size > 0]

    def log_names(self) -> list[str]:
        """What `unmute logs JOB NAME` can show: the instances and the nodes with a step log."""
        names = {state.instance for state in self.instances()}
        names |= {p.stem.removeprefix("node-") for p in (self.path / "logs").glob("node-*.log")}
        return sorted(names)


def tail(path: Path, lines: int) -> str:
    """The last lines of a file ('' if it cannot be read)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
