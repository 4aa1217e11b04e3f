"""The orchestrator's session driven in-process, with fake backends (no service processes).

Each test drives `VoiceSession` through the pipeline's `Backends` seam and reads the domain
events it emits, the history it keeps and the streams it opened.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TypeVar

import numpy as np
import pytest

from orchestrator.pipeline.config import ResponseRequest, SessionConfig
from orchestrator.pipeline.events import (
    ItemTruncated,
    PlaybackCleared,
    Problem,
    ResponseAudio,
    ResponseEnded,
    ResponseStarted,
    SessionEvent,
    SpeechStarted,
    UserTurnTranscribed,
)
from orchestrator.pipeline.history import History
from orchestrator.pipeline.session import VoiceSession
from tests.fakes.backends import PAUSE, VOICED, FakeBackends, FakeLlm, hear, until

MANUAL = SessionConfig(turn_detection=None)
T = TypeVar("T")


@contextlib.asynccontextmanager
async def running(
    backends: FakeBackends, config: SessionConfig = MANUAL
) -> AsyncIterator[tuple[VoiceSession, list[SessionEvent], asyncio.Task[None]]]:
    """A session serving in its own task, as the connection runs it; stopped on the way out."""
    events: list[SessionEvent] = []
    session = VoiceSession(backends, events.append, config, History())
    task = asyncio.create_task(session.run())
    await until(lambda: session.running.is_set() and backends.stt_streams)
    try:
        yield session, events, task
    finally:
        task.cancel()
        await asyncio.wait([task])  # a test that expects the session to fail reads the task itself


def of_type(events: list[SessionEvent], kind: type[T]) -> list[T]:
    return [e for e in events if isinstance(e, kind)]


async def user_says(session: VoiceSession, backends: FakeBackends, text: str) -> None:
    """A manual turn: audio, its words from the STT, a commit."""
    await session.append_audio(np.zeros(4800, np.float32))
    for word in text.split():
        backends.stt.word(word)
    session.commit()


async def test_a_turn_committed_while_a_reply_runs_keeps_the_conversation_in_order():
    """The reply's history entry used to be added only when it ended, so a user turn
    committed meanwhile landed first (and merged into the previous user turn)."""
    llm = FakeLlm("First answer in several words.")
    llm.gate = asyncio.Event()
    backends = FakeBackends(llm)
    async with running(backends) as (session, events, _):
        await user_says(session, backends, "first question")
        session.create_response(ResponseRequest())
        await until(llm.first_token_sent.is_set)
        await user_says(session, backends, "second question")  # the reply is still running
        await until(lambda: len(of_type(events, UserTurnTranscribed)) == 2)
        llm.gate.set()
        await until(lambda: of_type(events, ResponseEnded))
        assert of_type(events, ResponseEnded)[0].status == "completed"
        turns = [(m["role"], m["content"]) for m in session.history.for_llm()[1:]]
        assert turns == [
            ("user", "first question"),
            ("assistant", "First answer in several words."),
            ("user", "second question"),
        ]
        # The conversation's item chain agrees: the second turn follows the reply.
        started = of_type(events, ResponseStarted)[0]
        second = of_type(events, UserTurnTranscribed)[1]
        assert second.previous_item_id == started.item_id


async def test_a_barge_in_while_the_stt_reconnects_still_cancels_the_reply():
    llm = FakeLlm("A long reply that is still being generated.")
    llm.gate = asyncio.Event()
    backends = FakeBackends(llm)
    config = SessionConfig()  # server VAD, interrupt_response on
    async with running(backends, config) as (session, events, _):
        await hear(session, backends, VOICED, 3)
        backends.stt.word("hello")
        await hear(session, backends, PAUSE, 8)  # 640 ms of pause: the turn ends and the reply starts
        await until(lambda: of_type(events, ResponseAudio))
        backends.stt_refusals = 1  # the first reconnect fails too
        backends.stt.drop()
        await until(lambda: len(backends.stt_streams) == 2, timeout_s=10)
        problems = [p for p in of_type(events, Problem) if p.code.startswith("stt_")]
        assert problems and "paused" in problems[0].message  # reported once
        await hear(session, backends, VOICED, 9)  # 720 ms of speech over the reply, on the new stream
        await until(lambda: of_type(events, ResponseEnded))
        ended = of_type(events, ResponseEnded)[0]
        assert (ended.status, ended.reason) == ("cancelled", "turn_detected")
        assert len(of_type(events, SpeechStarted)) == 2 and of_type(events, PlaybackCleared)
        assert backends.tts_streams[0].closed
        assert len(of_type(events, Problem)) == len(problems)  # no other error


async def test_a_cancel_during_the_first_llm_token_stops_everything_and_keeps_no_reply():
    llm = FakeLlm("Never finished reply.")
    llm.gate = asyncio.Event()
    backends = FakeBackends(llm)
    async with running(backends) as (session, events, _):
        await user_says(session, backends, "hi")
        session.create_response(ResponseRequest())
        await until(llm.first_token_sent.is_set)
        started = of_type(events, ResponseStarted)[0]
        await session.cancel_response("resp_unknown", "evt-1")  # another id: refused, nothing stops
        assert of_type(events, Problem)[-1].code == "response_cancel_not_active"
        assert of_type(events, Problem)[-1].client_event_id == "evt-1"
        assert not of_type(events, ResponseEnded)
        await session.cancel_response(started.response_id)
        ended = of_type(events, ResponseEnded)[0]
        assert (ended.status, ended.reason) == ("cancelled", "client_cancelled")
        assert all(t.closed for t in backends.tts_streams)
        # The history keeps what was heard (at most the first word), not what was generated.
        replies = [m["content"] for m in session.history.for_llm() if m["role"] == "assistant"]
        assert replies in ([], ["Never"])
        assert backends.tts_streams[0].words == ["Never"]


async def test_a_cancel_before_the_reply_ran_still_ends_it():
    """`response.cancel` right behind `response.create` (the run's task never started) used
    to leave a `response.created` with no `response.done`."""
    backends = FakeBackends()
    async with running(backends) as (session, events, _):
        session.create_response(ResponseRequest())
        await session.cancel_response()
        assert [e.status for e in of_type(events, ResponseEnded)] == ["cancelled"]
        assert not backends.tts_streams and not backends.llm.requests


async def test_a_truncate_after_the_reply_ended_keeps_what_was_heard():
    backends = FakeBackends(FakeLlm("One two three four."))
    async with running(backends) as (session, events, _):
        await user_says(session, backends, "count")
        session.create_response(ResponseRequest())
        await until(lambda: of_type(events, ResponseEnded))
        item = of_type(events, ResponseEnded)[0].item_id
        session.truncate(item, audio_end_ms=300)  # words start every 240 ms: two were heard
        assert of_type(events, ItemTruncated)[0].heard == "One two"
        assert session.history.for_llm()[-1] == {"role": "assistant", "content": "One two"}
        session.truncate("item_nope", 100, "evt-2")
        assert of_type(events, Problem)[-1].code == "item_not_found"


async def test_an_exception_inside_a_part_ends_the_session_and_is_not_lost():
    """A bug (not a backend failure) in a reply ends the session's TaskGroup with it, so the
    connection can report `server_error` and close; the reply is reported failed first."""
    llm = FakeLlm("Boom goes the reply.")
    llm.fault = ZeroDivisionError("injected bug")
    backends = FakeBackends(llm)
    async with running(backends) as (session, events, task):
        await user_says(session, backends, "hi")
        session.create_response(ResponseRequest())
        with pytest.raises(BaseExceptionGroup) as ended:
            await asyncio.wait_for(asyncio.shield(task), 5)
        assert ended.group_contains(ZeroDivisionError)
        assert of_type(events, ResponseEnded)[0].status == "failed"
        assert all(s.closed for s in backends.stt_streams + backends.tts_streams)
        assert not session.running.is_set()
