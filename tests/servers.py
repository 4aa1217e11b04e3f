"""Start a service as its own process (`python -m services.X`), as a user would, and wait for /ready."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServiceProcess:
    """A running service: where it listens, its key, and its log file."""

    port: int
    api_key: str
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def start_service(
    module: str,
    args: list[str],
    api_key: str,
    workdir: Path,
    *,
    port: int | None = None,
    timeout_s: float = 120.0,
    env: dict | None = None,
    scheme: str = "http",
) -> Iterator[ServiceProcess]:
    """Run `python -m module args --port P` in `workdir` (so no stray .env is read) until /ready
    answers (over `scheme`: https for an orchestrator given a certificate, not verified here)."""
    port = port or free_port()
    log = workdir / "service.log"
    full_env = {**os.environ, "SERVICE_API_KEY": api_key, "LOG_FORMAT": "json", **(env or {})}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *args, "--port", str(port)],
            cwd=workdir,
            env=full_env | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    service = ServiceProcess(port, api_key, log, proc)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{module} exited with {proc.returncode}:\n{service.log_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                ready = f"{scheme}://127.0.0.1:{port}/ready"
                if httpx.get(ready, timeout=1, verify=scheme == "http").status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{module} not ready after {timeout_s} s:\n{service.log_text()[-3000:]}")
            time.sleep(0.2)
        yield service
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Restartable:
    """A service the test can kill and bring back on the same port."""

    def __init__(self, module_args: tuple[str, list[str]], api_key: str, workdir) -> None:
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
