"""Ports chosen and claimed under one node-wide lock, for the SLURM jobs that share a node.

Two jobs that start at the same moment from the same .env must not both take a port that is
free now and bound minutes later (vLLM loads for minutes). Every job on the node picks its
ports while holding an exclusive flock(2) on DIRECTORY/.lock and leaves a claim for each: a
directory DIRECTORY/<port> whose `owner` file reads "<pid> <job id> <user>". A port with a
live claim is not free; a claim whose owner process is gone (a job that was SIGKILLed) is
taken over; the owner removes its claims when it ends. The owner is the long-lived shell
(the batch script or a node's step), not the short-lived planner that writes the claim.

This is the format and the lock the bash versions of the job used (`flock` on the same
file, the same directories), so jobs of either version on one node keep out of each other's
ports. Standard library only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import random
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

DEFAULT_DIRECTORY = Path("/tmp/unmute-port-claims")
#: Where a port is looked for when the asked-for one is taken: this many random tries in this range.
SPARE_PORTS = range(20000, 30000)
SPARE_TRIES = 200


class ClaimError(Exception):
    """No lock, or no free port: the job cannot go on."""


class PortClaims:
    """The claims directory of one node, as one owner process sees it."""

    def __init__(self, directory: Path, owner: int, job_id: str, lock_timeout_s: float = 60) -> None:
        self.directory = directory
        self.owner = owner
        self.job_id = job_id
        self.lock_timeout_s = lock_timeout_s

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the node-wide lock (waiting up to lock_timeout_s for another job's)."""
        lock = self._open_lock()
        try:
            deadline = time.monotonic() + self.lock_timeout_s
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise ClaimError(
                            f"another job has held the port lock {self.directory}/.lock "
                            f"for {self.lock_timeout_s:g} s"
                        ) from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(lock)  # also releases the lock

    def _open_lock(self) -> int:
        # Shared by every user's jobs, like /tmp: the directory sticky and world-writable,
        # the lock file openable by all.
        if not self.directory.is_dir():
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
            except OSError:
                raise ClaimError(
                    f"cannot create the port claims directory {self.directory} (PORT_CLAIMS_DIR)"
                ) from None
            with contextlib.suppress(OSError):
                self.directory.chmod(0o1777)
        old_umask = os.umask(0)
        try:
            return os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            raise ClaimError(f"cannot open {self.directory}/.lock") from None
        finally:
            os.umask(old_umask)

    def claim(self, port: int) -> bool:
        """Claim the port for the owner if nobody else has and nothing listens on it (under the lock)."""
        claim = self.directory / str(port)
        if claim.is_dir():
            if _owner_alive(claim):
                return False
            try:
                shutil.rmtree(claim)
            except OSError:
                return False  # another user's stale claim: leave the port alone
        if not bindable(port):
            return False
        try:
            claim.mkdir()
        except OSError:
            return False
        (claim / "owner").write_text(f"{self.owner} {self.job_id} {_user()}\n")
        return True

    def pick(self, preferred: int | None, rng: random.Random | None = None) -> int:
        """The preferred port if it can be claimed, else a claimed spare one (under the lock)."""
        if preferred is not None and self.claim(preferred):
            return preferred
        for candidate in (rng or random.Random()).sample(SPARE_PORTS, SPARE_TRIES):
            if self.claim(candidate):
                return candidate
        raise ClaimError("no free port")

    def release(self) -> None:
        """Remove every claim of the owner."""
        for owner in self.directory.glob("*/owner"):
            with contextlib.suppress(OSError, IndexError):
                if owner.read_text().split()[0] == str(self.owner):
                    shutil.rmtree(owner.parent)


def bindable(port: int) -> bool:
    """Nothing listens on the port on this node (any address)."""
    with socket.socket() as probe:
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _owner_alive(claim: Path) -> bool:
    try:
        owner = (claim / "owner").read_text().split()[0]
    except (OSError, IndexError):
        return False
    return owner.isdigit() and Path(f"/proc/{owner}").is_dir()


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())
