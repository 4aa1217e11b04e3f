"""The step loop both model services share: one batched engine step at a time, in a worker thread.

A service's batcher says what the next step is (`next_step`) and routes what it produced;
this module owns the thread, the sleeping when there is nothing to do, and what happens when
a step fails. An exception out of a step is a bug or a broken device, not a client's bad
input (engines report that per slot), so it is fatal: every open stream gets an `Error` and
ends, the loop stops with `StepFailed`, and the lifecycle turns /ready to 503 and stops the
process so compose or SLURM notice. The loop never stalls silently.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from kit.protocol import Capacity, Error, WireMessage

logger = logging.getLogger(__name__)

R = TypeVar("R")


class StepFailed(RuntimeError):
    """The engine (or the routing of its results) raised; the text is the reason /ready reports."""


class Stream(Protocol):
    """What the loop needs of a stream: its place in the batch, the queue its session sends from,
    and the event set once the stream no longer holds its place (see `StepLoop.release`)."""

    index: int
    outbox: asyncio.Queue[WireMessage | None]
    released: asyncio.Event


S = TypeVar("S", bound=Stream)


@dataclass
class Batch(Generic[R]):
    """One step: the blocking engine call and what to do with its result."""

    #: Runs in the step thread.
    compute: Callable[[], R]
    #: Runs on the event loop; returns True when more work may be ready at once.
    deliver: Callable[[R], bool]


class StepLoop(abc.ABC, Generic[S]):
    """Owns the worker thread, the slots (`_free` indexes, open streams in `_slots`) and the loop."""

    def __init__(self, name: str, batch_size: int) -> None:
        self.name = name
        self.batch_size = batch_size
        # Popped from the end: the lowest index goes first.
        self._free: list[int] = list(range(batch_size))[::-1]
        self._slots: dict[int, S] = {}
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-step")
        self._failed: list[S] = []

    @abc.abstractmethod
    def next_step(self) -> Batch[Any] | None:
        """The next step, or None when no stream can make progress (the loop sleeps until woken)."""

    @abc.abstractmethod
    def open(self) -> S | None:
        """Take a free slot for a new stream, or None when all are in use."""

    @abc.abstractmethod
    def close(self, slot: S) -> None:
        """End the stream: the slot is handed back and its outbox gets the final None (once: a
        slot that is closed already is left as it is)."""

    def release(self, slot: S) -> None:
        """Hand the slot's index back for the next stream. A session closes its socket only after
        this, so a client that has seen the close can count on the slot being free again."""
        self._free.append(slot.index)
        slot.released.set()

    def capacity(self) -> Capacity:
        """Slots in all and free now (a slot still being stopped in the engine is not free)."""
        return Capacity(self.batch_size, len(self._free))

    def wake(self) -> None:
        """Tell a sleeping loop that a stream may have work."""
        self._wake.set()

    async def run(self) -> None:
        """Step until cancelled; raises `StepFailed` after ending every stream if a step fails."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    batch = self.next_step()
                    if batch is not None:
                        result = await loop.run_in_executor(self._executor, batch.compute)
                        if batch.deliver(result):
                            continue
                except Exception as exc:
                    reason = f"step error: {type(exc).__name__}: {exc}"
                    logger.exception("%s step failed; ending every stream and stopping", self.name)
                    self._fail_all(type(exc).__name__)
                    raise StepFailed(reason) from exc
                self._wake.clear()
                await self._wake.wait()
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _fail_all(self, kind: str) -> None:
        message = (
            f"internal error in the {self.name} engine ({kind}); "
            "the stream was ended and the service is stopping"
        )
        self._failed = list(self._slots.values())
        for slot in self._failed:
            slot.outbox.put_nowait(Error(message=message))
            self._end(slot)

    async def flush_failed(self, timeout_s: float) -> None:
        """Wait (at most `timeout_s`) until the sessions of the failed streams have taken their Error."""
        deadline = time.monotonic() + timeout_s
        # Sessions are plain consumers of their outbox; polling it keeps them unaware of this path.
        while any(not s.outbox.empty() for s in self._failed) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    def close_all(self) -> None:
        """End every stream (the step loop has been stopped)."""
        for slot in list(self._slots.values()):
            self._end(slot)

    def _end(self, slot: S) -> None:
        """Close a stream of a loop that will not step again: nothing is left to wait for."""
        self.close(slot)
        slot.released.set()
