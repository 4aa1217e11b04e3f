"""A TTS stream lost while the reply is being spoken (its replica died): the reply fails with
`tts_unavailable` and the session goes on; the next reply opens a new stream and completes.
It used to end the session with `server_error` (the loss came wrapped in `_speak`'s own
TaskGroup, which the reply did not look into)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from kit.protocol import AudioOut, WireMessage
from orchestrator.clients.errors import BackendUnavailable
from orchestrator.pipeline.config import ResponseRequest
from orchestrator.pipeline.events import Problem, ResponseEnded
from tests.fakes.backends import FakeBackends, FakeLlm, FakeTts, until
from tests.unit.orchestrator.test_session_parts import of_type, running, user_says


class DyingTts(FakeTts):
    """Its service dies once the first audio frame is out."""

    async def events(self) -> AsyncIterator[WireMessage]:
        async for message in super().events():
            yield message
            if isinstance(message, AudioOut):
                raise BackendUnavailable("TTS", "connection lost (test)")


class FirstTtsDies(FakeBackends):
    async def open_tts(self, voice: str | None) -> FakeTts:
        if self.tts_streams:
            return await super().open_tts(voice)
        self.tts_streams.append(DyingTts(voice))
        return self.tts_streams[-1]


async def test_a_tts_lost_mid_reply_fails_that_reply_only():
    backends = FirstTtsDies(FakeLlm("A reply of several words."))
    async with running(backends) as (session, events, task):
        await user_says(session, backends, "hello")
        session.create_response(ResponseRequest())
        await until(lambda: of_type(events, ResponseEnded))
        assert of_type(events, ResponseEnded)[0].status == "failed"
        assert [p.code for p in of_type(events, Problem)] == ["tts_unavailable"]
        assert not task.done() and backends.tts_streams[0].closed
        await user_says(session, backends, "again")
        session.create_response(ResponseRequest())
        await until(lambda: len(of_type(events, ResponseEnded)) == 2)
        assert of_type(events, ResponseEnded)[1].status == "completed"
        assert len(of_type(events, Problem)) == 1
