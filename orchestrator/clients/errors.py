"""One exception per backend failure kind, carrying the service name; the session turns
each into an `error` event whose message says what happened and what to expect."""

from __future__ import annotations


class BackendError(RuntimeError):
    """A backend could not do what the turn needed."""

    code = "backend_error"

    def __init__(self, service: str, detail: str) -> None:
        super().__init__(f"{service}: {detail}")
        self.service = service
        self.detail = detail

    @property
    def event_code(self) -> str:
        return f"{self.service.lower()}_{self.code}"


class BackendUnavailable(BackendError):
    """Connection refused, closed, or not ready."""

    code = "unavailable"


class BackendAtCapacity(BackendError):
    """The backend answered 'no free channels'."""

    code = "at_capacity"


class BackendTimeout(BackendError):
    """The backend did not answer in time."""

    code = "timeout"
