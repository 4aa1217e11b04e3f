"""Turn-taking in-process (fake backends): preemptive replies, the barge-in rule, the idle timeout."""

from __future__ import annotations

import asyncio

from orchestrator.pipeline.config import SessionConfig, TurnDetectionConfig
from orchestrator.pipeline.events import (
    IdleTimeout,
    PreparedReplyDropped,
    ResponseAudio,
    ResponseEnded,
    ResponseStarted,
    SpeechStopped,
    UserTurnTranscribed,
)
from orchestrator.pipeline.user_turn import UserTurn
from tests.fakes.backends import PAUSE, VOICED, FakeBackends, FakeLlm, FakeTurnModel, hear, until
from tests.unit.orchestrator.test_session_parts import of_type, running

SERVER_VAD = SessionConfig(
    turn_detection=TurnDetectionConfig(kind="server_vad", silence_duration_ms=500, preemptive=True)
)
NO_PREEMPTION = SessionConfig(turn_detection=TurnDetectionConfig(kind="server_vad", silence_duration_ms=500))


def talking_backends() -> FakeBackends:
    """Backends whose reply, once begun, keeps talking until the test sets `llm.gate`."""
    llm = FakeLlm("A reply that keeps going for a while.")
    llm.gate = asyncio.Event()
    return FakeBackends(llm)


async def test_a_reply_prepared_at_a_likely_end_is_sent_at_once_when_the_end_is_sure():
    backends = FakeBackends(FakeLlm("Prepared answer."))
    async with running(backends, SERVER_VAD) as (session, events, _):
        await hear(session, backends, VOICED, 3)
        backends.stt.word("hello")
        await hear(session, backends, PAUSE, 4)  # 320 ms: likely (past 250 ms), not sure (500 ms)
        await until(lambda: backends.tts_streams and backends.tts_streams[0].closed)
        assert not of_type(events, ResponseStarted) and not of_type(events, ResponseAudio)  # held
        assert session.history.for_llm()[1:] == []  # nor in the history yet
        await hear(session, backends, PAUSE, 3)  # 560 ms: sure
        await until(lambda: of_type(events, ResponseEnded))
        assert len(backends.llm.requests) == 1  # the prepared reply was the one sent
        assert backends.llm.requests[0][-1] == {"role": "user", "content": "hello"}
        started, ended = of_type(events, ResponseStarted)[0], of_type(events, ResponseEnded)[0]
        assert events.index(started) < events.index(of_type(events, ResponseAudio)[0])
        assert ended.status == "completed" and ended.stages_ms is not None
        assert ended.stages_ms["prepared_early"] is not None and ended.stages_ms["prepared_early"] > 0
        turns = [(m["role"], m["content"]) for m in session.history.for_llm()[1:]]
        assert turns == [("user", "hello"), ("assistant", "Prepared answer.")]


async def test_speech_after_a_likely_end_drops_the_prepared_reply_unheard():
    backends = FakeBackends(FakeLlm("Some answer."))
    async with running(backends, SERVER_VAD) as (session, events, _):
        await hear(session, backends, VOICED, 3)
        backends.stt.word("book")
        await hear(session, backends, PAUSE, 4)  # "I'd like to book..." - a likely end
        await until(lambda: backends.llm.requests)
        await hear(session, backends, VOICED, 6)  # "... a table for two"
        backends.stt.word("table")
        await until(lambda: of_type(events, PreparedReplyDropped))
        await hear(session, backends, PAUSE, 8)
        await until(lambda: of_type(events, ResponseEnded))
        assert [e.transcript for e in of_type(events, PreparedReplyDropped)] == ["book"]
        assert len(of_type(events, ResponseStarted)) == 1  # only the reply to the whole turn
        assert backends.llm.requests[-1][-1] == {"role": "user", "content": "book table"}
        assert [m["role"] for m in session.history.for_llm()[1:]] == ["user", "assistant"]


async def test_a_cough_a_click_or_an_mm_hm_does_not_interrupt_but_a_word_does():
    backends = talking_backends()
    async with running(backends, SERVER_VAD) as (session, events, _):
        await hear(session, backends, VOICED, 3)
        backends.stt.word("hello")
        await hear(session, backends, PAUSE, 8)
        await until(lambda: of_type(events, ResponseAudio))
        await hear(session, backends, VOICED, 6)  # a double cough: 480 ms of voiced audio, under 640 ms
        await hear(session, backends, PAUSE, 2)
        backends.stt.word("mm-hm")  # a backchannel
        await hear(session, backends, PAUSE, 2)
        await until(backends.stt.drained)
        assert not of_type(events, ResponseEnded)
        backends.stt.word("stop")
        await until(lambda: of_type(events, ResponseEnded))
        ended = of_type(events, ResponseEnded)[0]
        assert (ended.status, ended.reason) == ("cancelled", "turn_detected")


async def test_words_sent_late_for_speech_before_the_pause_neither_hold_the_turn_open_nor_barge_in():
    """Whisper sends a segment's words once it has ended, a good part of a second into the
    pause: they are the turn's words, not the user speaking again."""
    backends = talking_backends()
    async with running(backends, NO_PREEMPTION) as (session, events, _):
        await hear(session, backends, VOICED, 6)
        await hear(session, backends, PAUSE, 4)  # 320 ms into the pause ...
        backends.stt.word("hello", ago_s=0.6)  # ... the words of the 480 ms before it arrive
        backends.stt.word("there", ago_s=0.4)
        await hear(session, backends, PAUSE, 3)  # 560 ms of silence: the end, not 240 ms after "there"
        await until(lambda: of_type(events, SpeechStopped))
        assert of_type(events, SpeechStopped)[0].audio_end_ms == 13 * 80
        await until(lambda: of_type(events, ResponseAudio))
        assert backends.llm.requests[0][-1] == {"role": "user", "content": "hello there"}
        # Over the reply, a sound too short to interrupt, then its late words, which Whisper
        # may well hear as something other than "mm-hm": no interruption.
        await hear(session, backends, VOICED, 3)
        await hear(session, backends, PAUSE, 4)
        backends.stt.word("Mama.", ago_s=0.4)
        await hear(session, backends, PAUSE, 1)
        await until(backends.stt.drained)
        assert not of_type(events, ResponseEnded)
        backends.stt.word("stop")  # a word spoken now does
        await until(lambda: of_type(events, ResponseEnded))
        ended = of_type(events, ResponseEnded)[0]
        assert (ended.status, ended.reason) == ("cancelled", "turn_detected")


async def test_an_mm_hm_over_a_reply_joins_the_conversation_and_the_reply_goes_on():
    backends = talking_backends()
    llm = backends.llm
    async with running(backends, NO_PREEMPTION) as (session, events, _):
        await hear(session, backends, VOICED, 3)
        backends.stt.word("hello")
        await hear(session, backends, PAUSE, 8)
        await until(lambda: of_type(events, ResponseAudio))
        await hear(session, backends, VOICED, 4)  # "mm-hm": a turn of its own ...
        await hear(session, backends, PAUSE, 4)
        backends.stt.word("Mm-hmm.", ago_s=0.5)  # ... whose word comes once it has ended
        await hear(session, backends, PAUSE, 4)
        await until(
            lambda: [t.transcript for t in of_type(events, UserTurnTranscribed)] == ["hello", "Mm-hmm."]
        )
        await until(backends.stt.drained)
        assert not of_type(events, ResponseEnded) and len(llm.requests) == 1
        llm.gate.set()
        await until(lambda: of_type(events, ResponseEnded))
        assert [e.status for e in of_type(events, ResponseEnded)] == ["completed"]
        assert len(of_type(events, ResponseStarted)) == 1
        turns = [(m["role"], m["content"]) for m in session.history.for_llm()[1:]]
        assert turns == [
            ("user", "hello"),
            ("assistant", "A reply that keeps going for a while."),
            ("user", "Mm-hmm."),
        ]


async def test_the_idle_timeout_commits_an_empty_turn_and_asks_for_a_reply():
    config = SessionConfig(turn_detection=TurnDetectionConfig(kind="server_vad", idle_timeout_ms=1000))
    backends = FakeBackends(FakeLlm("Are you still there?"))
    async with running(backends, config) as (session, events, _):
        await hear(session, backends, PAUSE, 10)  # 800 ms: not yet
        await until(backends.stt.drained)
        assert not of_type(events, IdleTimeout)
        await hear(session, backends, PAUSE, 3)
        await until(lambda: of_type(events, ResponseEnded))
        timeout = of_type(events, IdleTimeout)[0]
        assert timeout.audio_end_ms - timeout.audio_start_ms == 1000  # the idle span, in input audio
        assert "said nothing" in backends.llm.requests[0][-1]["content"]
        assert len(of_type(events, IdleTimeout)) == 1  # once, not on every quiet step after


async def test_semantic_vad_ends_the_turn_on_the_end_of_turn_models_verdict():
    """The model judges each pause: "complete" ends the turn after a short quiet (where
    server_vad would wait 500 ms), "unfinished" waits, up to the eagerness's longest wait."""
    semantic = SessionConfig(turn_detection=TurnDetectionConfig(kind="semantic_vad", eagerness="auto"))
    sure = FakeBackends(FakeLlm("Answer."), FakeTurnModel(0.9))
    async with running(sure, semantic) as (session, events, _):
        await hear(session, sure, VOICED, 3)
        sure.stt.word("hello")
        await hear(session, sure, PAUSE, 1)  # the pause begins: the model is asked
        await until(lambda: sure.turn_model.calls == 1)
        await hear(session, sure, PAUSE, 1)  # 160 ms of quiet: enough for "complete"
        await until(lambda: of_type(events, ResponseEnded))
    unsure = FakeBackends(FakeLlm("Answer."), FakeTurnModel(0.1))
    async with running(unsure, semantic) as (session, events, _):
        await hear(session, unsure, VOICED, 3)
        unsure.stt.word("book")
        await hear(session, unsure, PAUSE, 10)  # 800 ms: server_vad would have ended the turn
        await until(unsure.stt.drained)
        assert unsure.turn_model.calls == 1 and not of_type(events, ResponseStarted)
        await hear(session, unsure, PAUSE, 41)  # past auto's longest wait, 4 s
        await until(lambda: of_type(events, ResponseEnded))


def test_backchannels_are_matched_as_whisper_writes_them():
    turn = UserTurn()
    for word in ("Mm-hmm.", "Uh-huh,", "Yeah.", "okay", "Hmm?", "Mhm…"):
        assert not turn.interrupts(word), word
    for word in ("Stop.", "Wait,", "but", "No!"):
        assert turn.interrupts(word), word
