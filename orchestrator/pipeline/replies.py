"""The assistant's side of a session: one reply at a time, and the recent ones kept for
`conversation.item.truncate`. Each reply is watched until its audio has played out.

A reply to the user's turn interrupts any reply still speaking. A reply the client asks for
(`response.create`, e.g. after returning a function's output) does not: the client plays
its audio after what it is still playing ("Let me check." is heard out), and its playback
clock starts where the other's ends. A barge-in stops every reply still speaking."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from orchestrator.pipeline.backends import Backends
from orchestrator.pipeline.config import ResponseRequest, SessionConfig
from orchestrator.pipeline.events import ItemTruncated, Problem, SessionEvent
from orchestrator.pipeline.history import History
from orchestrator.pipeline.latency import TurnLatency
from orchestrator.pipeline.response_run import ResponseRun

KEPT_RESPONSES = 32  # truncation only concerns recent items
# How a part starts a task in the session's TaskGroup (None: the session is ending).
Spawn = Callable[[Coroutine[Any, Any, None], str], "asyncio.Task[None] | None"]


class Replies:
    """Runs the session's replies; `current` is the latest (generating or still playing)."""

    def __init__(
        self,
        backends: Backends,
        history: History,
        emit: Callable[[SessionEvent], None],
        spawn: Spawn,
        session_id: str,
    ) -> None:
        self._backends, self._history, self._emit = backends, history, emit
        self._spawn, self._session_id = spawn, session_id
        self.config = SessionConfig()
        self.current: ResponseRun | None = None
        self._recent: dict[str, ResponseRun] = {}  # by item id

    def speaking(self) -> bool:
        """A reply is generating or its audio is still playing on the client."""
        return any(run.speaking() for run in self._recent.values())

    def new_run(
        self, latency: TurnLatency, held_for: str | None = None, request: ResponseRequest | None = None
    ) -> ResponseRun:
        """A reply that has not begun (a held one answers `held_for`, a turn not yet committed)."""
        return ResponseRun(
            request or ResponseRequest(),
            config=self.config,
            backends=self._backends,
            history=self._history,
            emit=self._emit,
            latency=latency,
            session_id=self._session_id,
            held_for=held_for,
        )

    def start(
        self, run: ResponseRun, previous_item: str | None, after: list[asyncio.Task[None]], *, interrupt: bool
    ) -> None:
        """Begin `run` now (released if it was held); it reads the history once `after` are done.
        `interrupt`: stop the replies still speaking (else it plays after them)."""
        speaking = [other for other in self._recent.values() if other.speaking()]
        if interrupt:
            stopping = [self._spawn(other.interrupt(), "interrupt") for other in speaking]
            after = [*after, *(task for task in stopping if task is not None)]
        else:
            run.playback.not_before = max((other.playback.end() for other in speaking), default=0.0)
        if run.held_for is None:
            run.begin(previous_item)
            run.task = self._spawn(run.run(after), run.id)
        else:
            run.release(previous_item)
        self._spawn(run.watch_playback(), f"{run.id}-playback")
        self.current = run
        self._recent[run.item_id] = run
        while len(self._recent) > KEPT_RESPONSES:
            self._recent.pop(next(iter(self._recent)))

    def refuses_another(self, client_event_id: str | None) -> bool:
        """One reply at a time, as in OpenAI's API: while one generates, another is refused."""
        if self.current is None or not self.current.generating():
            return False
        what = "a response is already in progress; cancel it first (response.cancel)"
        code = "conversation_already_has_active_response"
        self._emit(Problem(code, what, "invalid_request_error", client_event_id))
        return True

    def barge_in(self) -> None:
        """The user talks over the assistant: stop the replies and flush the client's playback."""
        for run in self._recent.values():
            if run.speaking():
                self._spawn(run.interrupt(), "interrupt")

    async def cancel(self, response_id: str | None, client_event_id: str | None) -> None:
        """`response.cancel`: stop the reply; its playback is over too (output_audio_buffer.cleared)."""
        run = self.current
        if run is None or not run.generating() or response_id not in (None, run.id):
            what = f"response {response_id!r} is" if response_id else "no response is"
            code = "response_cancel_not_active"
            self._emit(Problem(code, f"{what} in progress", "invalid_request_error", client_event_id))
            return
        run.cancel_reason = "client_cancelled"
        await run.interrupt()

    def truncate(self, item_id: str, audio_end_ms: int, client_event_id: str | None) -> None:
        """Keep in the history only the words of `item_id` whose audio had started by `audio_end_ms`."""
        run = self._recent.get(item_id)
        if run is None or not run.output.has_message:
            what = f"no assistant item {item_id!r}"
            self._emit(Problem("item_not_found", what, "invalid_request_error", client_event_id, "item_id"))
            return
        if run.text_only:
            what = f"item {item_id!r} is text, with no audio to truncate"
            self._emit(Problem("invalid_value", what, "invalid_request_error", client_event_id, "item_id"))
            return
        heard = run.playback.heard_text(audio_end_ms)
        run.output.message.text = heard
        self._history.fill(item_id, heard, None)
        self._emit(ItemTruncated(item_id, audio_end_ms, heard))
