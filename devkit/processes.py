"""Servers as their own processes, for tests and benchmarks: `python -m <module>` (or a script)
started as a user starts it, on a free loopback port, in a folder of its own (so no stray `.env`
is read) with its output in a log file there; waited for until /ready answers; stopped with
SIGTERM, and SIGKILL for one that ignores it.

`start_service` is one server for the span of a `with`; `Restartable` one that a test kills and
brings back; `launch`, `wait_ready` and `stop` are the parts, for a whole stack started at once
(bench/e2e_stack.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

logger = logging.getLogger(__name__)

#: The checkout: servers import the project's packages from here (PYTHONPATH).
ROOT = Path(__file__).resolve().parents[1]
#: Lines of a failed server's log quoted in its `ServiceError`.
LOG_TAIL_LINES = 40


class ServiceError(RuntimeError):
    """A server exited or did not become ready; the message names it and quotes its log's end."""


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServiceProcess:
    """A running server: its name, where it listens, the key it was given, its log and process."""

    name: str
    port: int
    api_key: str
    log: Path
    process: subprocess.Popen[bytes]
    #: What its /ready is probed over: https for an orchestrator given a certificate (not verified).
    scheme: str = "http"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def failure(self, what: str) -> ServiceError:
        """An error naming this server, with the end of its log."""
        tail = "\n".join(self.log_text().splitlines()[-LOG_TAIL_LINES:])
        return ServiceError(f"{self.name} {what}; last lines of {self.log}:\n{tail}")

    def check_alive(self) -> None:
        """Raise `ServiceError` if the process has exited."""
        if self.process.poll() is not None:
            raise self.failure(f"exited with status {self.process.returncode}")

    def is_ready(self) -> bool:
        """Whether /ready answers 200 now."""
        with contextlib.suppress(httpx.HTTPError):
            url = f"{self.scheme}://127.0.0.1:{self.port}/ready"
            return httpx.get(url, timeout=2, verify=self.scheme == "http").status_code == 200
        return False


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the parent dies, even by SIGKILL (Linux's PR_SET_PDEATHSIG)."""
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)


def launch(
    name: str,
    argv: list[str],
    workdir: Path,
    *,
    api_key: str = "",
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    scheme: str = "http",
    die_with_parent: bool = False,
) -> ServiceProcess:
    """Start `python ARGV --port P` in `workdir`, its output in `workdir/NAME.log`; do not wait.

    The environment is this process's, with SERVICE_API_KEY=`api_key`, LOG_FORMAT=json, then
    `env` over them, and the checkout first on PYTHONPATH. `die_with_parent` (Linux): the
    server gets SIGTERM if this process dies without stopping it; only from a process that
    starts no threads of its own (it runs between fork and exec).
    """
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{name}.log"
    full_env = {**os.environ, "SERVICE_API_KEY": api_key, "LOG_FORMAT": "json", **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), full_env.get("PYTHONPATH")]))
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, *argv, "--port", str(port)],
            cwd=workdir,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if die_with_parent else None,  # noqa: PLW1509 (see above)
        )
    logger.info("started %s (pid %d, port %d, log %s)", name, process.pid, port, log)
    return ServiceProcess(name, port, api_key, log, process, scheme)


def wait_ready(services: Iterable[ServiceProcess], timeout_s: float) -> None:
    """Poll /ready of every one until all answer 200; `ServiceError` for the first that exits,
    or for one still not ready after `timeout_s`."""
    waiting = list(services)
    deadline = time.monotonic() + timeout_s
    while waiting:
        for service in list(waiting):
            service.check_alive()
            if service.is_ready():
                logger.info("%s ready", service.name)
                waiting.remove(service)
        if waiting and time.monotonic() > deadline:
            raise waiting[0].failure(f"not ready after {timeout_s:g} s")
        if waiting:
            time.sleep(0.2)


def stop(services: Iterable[ServiceProcess], grace_s: float = 10.0) -> None:
    """SIGTERM every one still running, in the order given, then SIGKILL what is left after `grace_s`."""
    services = list(services)
    for service in services:
        if service.process.poll() is None:
            service.process.terminate()
    deadline = time.monotonic() + grace_s
    for service in services:
        try:
            service.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            logger.warning("%s ignored SIGTERM; killing it", service.name)
            service.process.kill()
            service.process.wait()


@contextlib.contextmanager
def start_service(
    module: str,
    args: list[str],
    api_key: str,
    workdir: Path,
    *,
    port: int | None = None,
    timeout_s: float = 120.0,
    env: dict[str, str] | None = None,
    scheme: str = "http",
) -> Iterator[ServiceProcess]:
    """`python -m module args --port P` in `workdir` (see `launch`) until /ready answers (over
    `scheme`), for the span of the `with`; stopped at its end."""
    name = module.rsplit(".", 1)[-1]
    service = launch(name, ["-m", module, *args], workdir, api_key=api_key, port=port, env=env, scheme=scheme)
    try:
        wait_ready([service], timeout_s)
        yield service
    finally:
        stop([service])


class Restartable:
    """A service the test can kill and bring back on the same port."""

    def __init__(self, module_args: tuple[str, list[str]], api_key: str, workdir: Path) -> None:
        self.module, self.args = module_args
        self.api_key, self.workdir = api_key, workdir
        self._ctx: contextlib.AbstractContextManager[ServiceProcess] | None = None
        self.proc = self.start()

    def start(self, port: int | None = None) -> ServiceProcess:
        self._ctx = start_service(self.module, self.args, self.api_key, self.workdir, port=port)
        self.proc = self._ctx.__enter__()
        return self.proc

    def kill(self) -> None:
        assert self._ctx is not None
        self._ctx.__exit__(None, None, None)
        self._ctx = None

    def restart(self) -> None:
        self.start(self.proc.port)

    def close(self) -> None:
        if self._ctx is not None:
            self.kill()
