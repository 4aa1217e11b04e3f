"""The one error the command reports to the user: what went wrong and what to do about it."""

from __future__ import annotations


class CliError(Exception):
    """A failure the user can act on; its message names the fix. `status` is the exit code."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status
