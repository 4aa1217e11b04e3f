"""The conversation as items, in-process (fake backends): function calls streamed by the LLM,
items a client creates and deletes, text-only and out-of-band replies, and when a reply's
playback is over. Each test reads the domain events and the LLM requests."""

from __future__ import annotations

import asyncio

import numpy as np

from orchestrator.pipeline.config import ResponseRequest, SessionConfig, Tool
from orchestrator.pipeline.events import (
    FunctionCallArguments,
    FunctionCallDone,
    FunctionCallStarted,
    ItemCreated,
    ItemDeleted,
    PlaybackCleared,
    PlaybackFinished,
    Problem,
    ReplyMessageStarted,
    ResponseEnded,
    ResponseText,
    UserTurnTranscribed,
)
from orchestrator.pipeline.items import FunctionCall, FunctionCallOutput, Message
from orchestrator.pipeline.session import VoiceSession
from tests.fakes.backends import FakeBackends, FakeLlm, until
from tests.unit.orchestrator.test_session_parts import MANUAL, of_type, running

WEATHER = Tool("get_weather", "The weather in a city.", {"type": "object", "properties": {"city": {}}})
TOOLS = SessionConfig(turn_detection=None, tools=(WEATHER,))


def typed(session: VoiceSession, text: str, item_id: str | None = None) -> str:
    item_id = item_id or f"typed_{len(session.history.items)}"
    session.create_item(Message(item_id, "user", text, spoken=False), None)
    return item_id


async def test_words_then_a_call_are_spoken_then_streamed_and_the_next_request_carries_both():
    llm = FakeLlm("Let me check.", calls=[("get_weather", '{"city": "Lyon"}')])
    backends = FakeBackends(llm)
    async with running(backends, TOOLS) as (session, events, _):
        typed(session, "weather in Lyon?")
        session.create_response(ResponseRequest())
        await until(lambda: of_type(events, ResponseEnded))
        order = [type(e) for e in events if isinstance(e, ReplyMessageStarted | FunctionCallStarted)]
        assert order == [ReplyMessageStarted, FunctionCallStarted]  # the message comes first
        assert backends.tts_streams[0].words == ["Let", "me", "check."]  # spoken
        pieces = [e.delta for e in of_type(events, FunctionCallArguments)]
        assert len(pieces) == FakeLlm.ARGUMENT_PIECES and "".join(pieces) == '{"city": "Lyon"}'
        done = of_type(events, FunctionCallDone)[0].item
        assert (done.name, done.arguments, done.status) == ("get_weather", '{"city": "Lyon"}', "completed")
        ended = of_type(events, ResponseEnded)[0]
        assert [type(i) for i in ended.outputs] == [Message, FunctionCall]
        assert llm.llm_requests[0].tools[0]["function"]["name"] == "get_weather"
        assert llm.llm_requests[0].tool_choice == "auto"
        # The client runs the function and asks for the next reply.
        llm.reply, llm.calls = "It is sunny.", []
        session.create_item(FunctionCallOutput("out_1", done.call_id, '{"sky": "sunny"}'), None)
        session.create_response(ResponseRequest())
        await until(lambda: len(of_type(events, ResponseEnded)) == 2)
        assert llm.requests[1][1:] == [
            {"role": "user", "content": "weather in Lyon?"},
            {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [
                    {
                        "id": done.call_id,
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Lyon"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": done.call_id, "content": '{"sky": "sunny"}'},
        ]


async def test_several_calls_in_one_reply_and_no_message_without_words():
    llm = FakeLlm("", calls=[("get_weather", '{"city": "Lyon"}'), ("get_weather", '{"city": "Nice"}')])
    backends = FakeBackends(llm)
    async with running(backends, TOOLS) as (session, events, _):
        typed(session, "Lyon and Nice?")
        session.create_response(ResponseRequest(tool_choice="required"))
        await until(lambda: of_type(events, ResponseEnded))
        assert not of_type(events, ReplyMessageStarted)
        calls = [e.item for e in of_type(events, FunctionCallDone)]
        assert [c.arguments for c in calls] == ['{"city": "Lyon"}', '{"city": "Nice"}']
        assert all(c.status == "completed" for c in calls) and calls[0].call_id != calls[1].call_id
        assert [i.item_id for i in of_type(events, ResponseEnded)[0].outputs] == [c.item_id for c in calls]
        assert llm.llm_requests[0].tool_choice == "required"
        # The reply placed nothing but its calls in the conversation.
        assert [type(i) for i in session.history.items] == [Message, FunctionCall, FunctionCall]


async def test_a_cancel_during_a_calls_arguments_leaves_no_half_call_for_the_llm():
    llm = FakeLlm("", calls=[("get_weather", '{"city": "Lyon, France"}')])
    llm.gate, llm.gate_from = asyncio.Event(), 2  # the call's name and first piece, then it waits
    backends = FakeBackends(llm)
    async with running(backends, TOOLS) as (session, events, _):
        typed(session, "weather?")
        session.create_response(ResponseRequest())
        await until(lambda: of_type(events, FunctionCallArguments))  # the first piece is out
        await session.cancel_response()
        ended = of_type(events, ResponseEnded)[0]
        assert (ended.status, ended.reason) == ("cancelled", "client_cancelled")
        cut = of_type(events, FunctionCallDone)[0].item
        assert cut.status == "incomplete" and cut.arguments != '{"city": "Lyon, France"}'
        assert [i.status for i in ended.outputs] == ["incomplete"]
        llm.calls, llm.gate = [], None
        typed(session, "never mind")
        session.create_response(ResponseRequest())
        await until(lambda: len(of_type(events, ResponseEnded)) == 2)
        assert all("tool_calls" not in m for m in llm.requests[1])
        assert llm.requests[1][1:] == [{"role": "user", "content": "weather? never mind"}]


async def test_a_text_only_reply_opens_no_tts_and_sends_the_llms_text():
    backends = FakeBackends(FakeLlm("**Sunny** all day."))
    async with running(backends, SessionConfig(turn_detection=None, text_only=True)) as (session, events, _):
        typed(session, "weather?")
        session.create_response(ResponseRequest())
        await until(lambda: of_type(events, ResponseEnded))
        assert backends.tts_streams == []
        assert "".join(e.text for e in of_type(events, ResponseText)) == "**Sunny** all day. "
        assert of_type(events, ResponseEnded)[0].outputs[0].spoken is False
        assert session.history.for_llm()[-1] == {"role": "assistant", "content": "**Sunny** all day. "}
        # One reply with a voice, in a text session.
        session.create_response(ResponseRequest(text_only=False))
        await until(lambda: len(of_type(events, ResponseEnded)) == 2)
        assert len(backends.tts_streams) == 1


async def test_an_out_of_band_reply_reads_its_input_and_stays_out_of_the_conversation():
    llm = FakeLlm("Positive.")
    backends = FakeBackends(llm)
    async with running(backends) as (session, events, _):
        first = typed(session, "I love this place.")
        before = list(session.history.items)
        context = (first, Message("q", "user", "Is that positive?", spoken=False))
        session.create_response(ResponseRequest(out_of_band=True, text_only=True, context=context))
        await until(lambda: of_type(events, ResponseEnded))
        assert session.history.items == before
        assert llm.requests[0][1:] == [{"role": "user", "content": "I love this place. Is that positive?"}]
        session.create_response(ResponseRequest(out_of_band=True, context=("item_gone",)), "evt-9")
        assert (of_type(events, Problem)[-1].code, of_type(events, Problem)[-1].client_event_id) == (
            "item_not_found",
            "evt-9",
        )


async def test_items_go_where_the_client_says_and_a_deleted_one_leaves_the_context():
    llm = FakeLlm("Ok.")
    backends = FakeBackends(llm)
    async with running(backends, MANUAL) as (session, events, _):
        b = typed(session, "second", "b")
        session.create_item(Message("a", "user", "first", spoken=False), "root")
        session.create_item(Message("s", "system", "Answer in French.", spoken=False), None)
        session.create_item(Message("c", "assistant", "noted", spoken=False), "b")
        assert [i.item_id for i in session.history.items] == ["a", b, "c", "s"]
        assert [e.previous_item_id for e in of_type(events, ItemCreated)] == [None, None, b, b]
        session.delete_item("c")
        assert of_type(events, ItemDeleted)[0].item_id == "c"
        session.create_response(ResponseRequest())
        await until(lambda: of_type(events, ResponseEnded))
        assert llm.requests[0][0]["content"].endswith("\n\nAnswer in French.")
        assert llm.requests[0][1:] == [{"role": "user", "content": "first second"}]
        # Refused: a duplicate id, an unknown place, an output of no call, deleting what is not there.
        session.create_item(Message("a", "user", "again", spoken=False), None, "e1")
        session.create_item(Message("d", "user", "x", spoken=False), "nowhere", "e2")
        session.create_item(FunctionCallOutput("o", "call_nope", "42"), None, "e3")
        session.delete_item("c", "e4")
        refused = [(p.client_event_id, p.code, p.param) for p in of_type(events, Problem)]
        assert refused == [
            ("e1", "invalid_value", "item.id"),
            ("e2", "item_not_found", "previous_item_id"),
            ("e3", "item_not_found", "item.call_id"),
            ("e4", "item_not_found", "item_id"),
        ]


async def test_an_audio_item_is_transcribed_on_a_stream_of_its_own_before_the_reply():
    llm = FakeLlm("Heard you.")
    backends = FakeBackends(llm)
    async with running(backends) as (session, events, _):
        backends.words_at_flush = ["hello"]  # what the STT hears in the clip
        session.create_item(Message("clip", "user"), None, audio=np.zeros(24_000, np.float32))
        session.create_response(ResponseRequest())  # waits for the transcript
        await until(lambda: of_type(events, ResponseEnded))
        clip_stream = backends.stt_streams[1]
        assert of_type(events, ItemCreated)[0].item.status == "in_progress"
        assert of_type(events, UserTurnTranscribed)[0].transcript == "hello"
        assert clip_stream.audio_samples == 24_000 and clip_stream.closed
        assert llm.requests[0][-1] == {"role": "user", "content": "hello"}


async def test_playback_is_over_after_the_reply_ends_unless_a_barge_in_clears_it():
    backends = FakeBackends(FakeLlm("One two."))  # 2 words: 480 ms of audio
    async with running(backends) as (session, events, _):
        typed(session, "count")
        session.create_response(ResponseRequest())
        await until(lambda: of_type(events, PlaybackFinished), timeout_s=5)
        assert events.index(of_type(events, ResponseEnded)[0]) < events.index(
            of_type(events, PlaybackFinished)[0]
        )
        # A reply whose generation is over but whose audio is still playing: a barge-in clears it.
        backends.llm.reply = " ".join(["word"] * 20)  # ~5 s of audio
        session.create_response(ResponseRequest())
        await until(lambda: len(of_type(events, ResponseEnded)) == 2)
        session.replies.barge_in()
        await until(lambda: of_type(events, PlaybackCleared))
        await asyncio.sleep(0.1)
        assert len(of_type(events, PlaybackFinished)) == 1  # never for the cleared one
