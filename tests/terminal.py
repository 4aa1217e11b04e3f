"""Commands run in a pseudo-terminal, as a person runs them in theirs: what they print (as
the screen shows it), what is typed, Ctrl-C. Every command and its output go to one
transcript, which a test can save for the docs."""

from __future__ import annotations

import os
import pty
import re
import select
import shlex
import signal
import time
from pathlib import Path


class Command:
    """One running command on its own terminal (it is the terminal's foreground process)."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, transcript: list[str]) -> None:
        self.transcript = transcript
        self.output = ""
        self.status: int | None = None
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the terminal is its controlling one, so Ctrl-C reaches it
            try:
                # As a shell starts a foreground job: Ctrl-C interrupts it, even where the
                # tests themselves run with SIGINT ignored (started in the background).
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                os.chdir(cwd)
                os.execvpe(args[0], args, env)
            finally:
                os._exit(127)

    def _read(self, wait_s: float) -> None:
        ready, _, _ = select.select([self.fd], [], [], wait_s)
        if not ready:
            return
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # the child closed its side: it has exited
            data = b""
        if data:
            text = data.decode(errors="replace").replace("\r\n", "\n")
            self.output += text
            self.transcript.append(text)
        else:
            self._reap(block=True)

    def _reap(self, block: bool) -> None:
        if self.status is not None:
            return
        pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
        if pid:
            self.status = os.waitstatus_to_exitcode(status)

    def expect(self, pattern: str, timeout_s: float = 120) -> re.Match[str]:
        """Wait until the output matches `pattern`; fail with the output so far if it does not."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            match = re.search(pattern, self.output)
            if match:
                return match
            if self.status is not None:
                break
            self._read(0.2)
        raise AssertionError(f"no {pattern!r} in the output of the command:\n{self.output}")

    def type(self, text: str) -> None:
        """Keys typed at the terminal (\\x03 is Ctrl-C); the terminal echoes them."""
        os.write(self.fd, text.encode())

    def wait(self, timeout_s: float = 120) -> int:
        """Until the command exits (reading what it prints meanwhile); its exit status."""
        deadline = time.monotonic() + timeout_s
        while self.status is None:
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                self._reap(block=True)
                raise AssertionError(f"the command did not exit in {timeout_s} s:\n{self.output}")
            self._read(0.2)
            self._reap(block=False)
        while select.select([self.fd], [], [], 0)[0]:  # what it printed last
            before = len(self.output)
            self._read(0)
            if len(self.output) == before:
                break
        os.close(self.fd)
        return self.status


class Terminal:
    """A shell-like session: commands run one after another in the same environment."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.cwd = cwd
        self.transcript: list[str] = []

    def start(self, *args: str) -> Command:
        """Start a command, as typed at the prompt."""
        self.transcript.append(f"$ {shlex.join(args)}\n")
        return Command(list(args), self.env, self.cwd, self.transcript)

    def run(self, *args: str, timeout_s: float = 120) -> tuple[int, str]:
        """Run a command to its end: its exit status and what it printed."""
        command = self.start(*args)
        status = command.wait(timeout_s)
        return status, command.output

    def text(self) -> str:
        return "".join(self.transcript)
