"""A thread that runs an engine's slow decodes beside the step loop, batching what is queued.

The step thread submits jobs and collects results; it never waits for a decode, so Steps keep
flowing at frame rate while one runs (CTranslate2 releases the GIL). Whatever is queued when
the worker comes free goes into one batched call. A decode that raises is a bug or a broken
model: the worker stops, and the next `results()` raises that exception in the step thread,
which fails the step loop exactly as a failing step does.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

J = TypeVar("J")
R = TypeVar("R")


class DecodeWorker(Generic[J, R]):
    """Runs `decode(jobs) -> results` (one result per job, in order) in a daemon thread.

    `batch_key(job)` groups jobs that are cheap to run together (the decoder pads a batch to
    its longest member); one call takes the oldest job and the queued jobs of its group.
    `wake()` is called from the worker thread whenever results are ready or it failed.
    """

    def __init__(
        self,
        decode: Callable[[list[J]], list[R]],
        wake: Callable[[], None],
        batch_key: Callable[[J], Hashable] = lambda _: None,
        name: str = "decode",
    ) -> None:
        self._decode = decode
        self._wake = wake
        self._batch_key = batch_key
        self._lock = threading.Condition()
        self._queue: list[tuple[object, J]] = []
        self._done: list[tuple[object, R]] = []
        self._failure: BaseException | None = None
        self._closed = False
        self.busy = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, tag: object, job: J) -> None:
        """Queue a job; its result comes back from `results()` with the same tag."""
        with self._lock:
            self._queue.append((tag, job))
            self._lock.notify()

    def results(self) -> list[tuple[object, R]]:
        """The results finished since the last call; raises the decode's exception if one failed."""
        with self._lock:
            if self._failure is not None:
                raise self._failure
            done, self._done = self._done, []
        return done

    def idle(self) -> bool:
        """Nothing queued and nothing being decoded (finished results may still wait)."""
        with self._lock:
            return not self._queue and not self.busy

    def close(self) -> None:
        """Stop the thread once the decode under way (if any) is over."""
        with self._lock:
            self._closed = True
            self._lock.notify()
        self._thread.join(timeout=30)

    def _take(self) -> list[tuple[object, J]] | None:
        with self._lock:
            while not self._queue and not self._closed:
                self._lock.wait()
            if self._closed:
                return None
            key = self._batch_key(self._queue[0][1])
            batch = [item for item in self._queue if self._batch_key(item[1]) == key]
            self._queue = [item for item in self._queue if self._batch_key(item[1]) != key]
            self.busy = True
            return batch

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            try:
                results = self._decode([job for _, job in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"decode returned {len(results)} results for {len(batch)} jobs")
            except BaseException as exc:
                logger.exception("decode worker failed; the step loop will stop")
                with self._lock:
                    self._failure = exc
                    self.busy = False
                self._wake()
                return
            with self._lock:
                self._done.extend((tag, result) for (tag, _), result in zip(batch, results, strict=True))
                self.busy = False
            self._wake()
