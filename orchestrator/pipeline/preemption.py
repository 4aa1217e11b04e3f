"""Preemptive replies: a reply prepared at a likely end of turn, sent once the end is sure.

At a likely end the STT is flushed and a reply to the words so far starts, held: its
events are kept, not sent. If the end is confirmed with the same words, the held reply is
released at once (its LLM and TTS time already spent); if the user goes on speaking, it is
dropped without a sound and without a history entry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from orchestrator.clients.errors import BackendError
from orchestrator.pipeline.events import PreparedReplyDropped, SessionEvent
from orchestrator.pipeline.latency import TurnLatency
from orchestrator.pipeline.replies import Spawn
from orchestrator.pipeline.response_run import ResponseRun
from orchestrator.pipeline.stt_link import SttLink
from orchestrator.pipeline.user_turn import UserTurn


@dataclass
class PreparedReply:
    """One preparation: the flush, then the held reply to `words` words."""

    latency: TurnLatency
    task: asyncio.Task[None] | None = None
    run: ResponseRun | None = None
    words: int = -1  # the turn's word count after the flush; more later means it went on
    dropped: bool = False


class Preemption:
    """At most one prepared reply at a time, for the user turn in progress."""

    def __init__(
        self,
        stt: SttLink,
        turn: UserTurn,
        new_run: Callable[[TurnLatency, str], ResponseRun],
        spawn: Spawn,
        emit: Callable[[SessionEvent], None],
    ) -> None:
        self._stt, self._turn, self._new_run = stt, turn, new_run
        self._spawn, self._emit = spawn, emit
        self.current: PreparedReply | None = None

    def prepare(self) -> None:
        """The turn looks finished: flush and start a held reply (once per likely end)."""
        if self.current is not None:
            return
        now = TurnLatency.now()
        prepared = PreparedReply(TurnLatency(speech_end=now - self._turn.quiet_s(), prepared=now))
        self.current = prepared
        prepared.task = self._spawn(self._start(prepared), "prepare")

    async def _start(self, prepared: PreparedReply) -> None:
        try:
            await self._stt.flush()
        except BackendError:
            return  # the confirmed end flushes again and reports it
        prepared.latency.transcript = TurnLatency.now()
        transcript = self._turn.transcript()
        if prepared.dropped or not transcript:
            return
        prepared.words = self._turn.word_count()
        run = self._new_run(prepared.latency, transcript)
        prepared.run = run
        run.task = self._spawn(run.run(), run.id)

    def user_went_on(self, *, word: bool) -> None:
        """Real speech after the likely end: drop the preparation. A word counts only once the
        flush is done (the flush itself brings the turn's last words)."""
        if self.current is not None and (not word or self.current.words >= 0):
            self.drop()

    def drop(self) -> None:
        """Drop the preparation and its held reply, unheard."""
        prepared, self.current = self.current, None
        if prepared is not None:
            self._spawn(self._discard(prepared), "drop")

    async def take(self) -> PreparedReply | None:
        """At the confirmed end: the prepared reply if it answers the turn's final words.

        Waits for the preparation's flush (the confirmed end needs it anyway); a reply to
        fewer words than the turn now has is dropped.
        """
        prepared, self.current = self.current, None
        if prepared is None:
            return None
        if prepared.task is not None:
            await asyncio.wait([prepared.task])
        if prepared.run is None or prepared.words != self._turn.word_count():
            await self._discard(prepared)
            return None
        return prepared

    async def _discard(self, prepared: PreparedReply) -> None:
        prepared.dropped = True
        if prepared.task is not None:
            prepared.task.cancel()  # a flush still running is no longer needed
            await asyncio.wait([prepared.task])
        if prepared.run is not None:
            await prepared.run.discard()
            self._emit(PreparedReplyDropped(prepared.run.held_for or ""))
