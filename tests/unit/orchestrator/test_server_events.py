"""Our server events against the `openai` package's own GA server-event models.

Each event we can send is serialized as it goes on the wire and validated by the SDK's
`RealtimeServerEvent` union (what strict clients such as `openai-agents` do); the SDK
must keep every field we sent, unchanged, and know no field of ours it does not declare
unless it is one of our listed additions.
"""

from __future__ import annotations

import base64
import json
import typing
from typing import Any

import pydantic
import pytest
from openai import BaseModel as SdkModel
from openai.types.realtime import RealtimeServerEvent

from orchestrator.realtime.server_events import (
    SERVER_EVENTS,
    ConversationItemAdded,
    ConversationItemDeleted,
    ConversationItemDone,
    ConversationItemRetrieved,
    ConversationItemTruncated,
    ErrorEvent,
    FunctionCallArgumentsDelta,
    FunctionCallArgumentsDone,
    InputAudioBufferCleared,
    InputAudioBufferCommitted,
    InputAudioBufferSpeechStarted,
    InputAudioBufferSpeechStopped,
    InputAudioBufferTimeoutTriggered,
    InputTranscriptionCompleted,
    InputTranscriptionDelta,
    OutputAudioBufferCleared,
    OutputAudioBufferStarted,
    OutputAudioBufferStopped,
    OutputItemAdded,
    OutputItemDone,
    ResponseCreated,
    ResponseDone,
    SessionCreated,
    SessionUpdated,
    UnmuteLatency,
    UnmuteOutputAudioClear,
    UnmutePreparedReplyDropped,
)
from orchestrator.realtime.server_items import (
    ContentPart,
    ContentPartAdded,
    ContentPartDone,
    DurationUsage,
    OutputAudioDelta,
    OutputAudioDone,
    OutputTextDelta,
    OutputTextDone,
    OutputTranscriptDelta,
    OutputTranscriptDone,
    ResponseObject,
    ResponseStatusDetails,
    ServerEvent,
    StatusError,
    TextPart,
)
from orchestrator.realtime.session_model import (
    Audio,
    AudioInput,
    AudioOutput,
    FunctionTool,
    Session,
    ToolChoiceFunction,
    TurnDetection,
)
from orchestrator.realtime.wire_items import (
    AssistantMessageItem,
    FunctionCallItem,
    FunctionCallOutputItem,
    InputTextContent,
    SystemMessageItem,
    UserMessageItem,
)

SDK_EVENTS: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(RealtimeServerEvent)
EXTENSION_PREFIX = "unmute_slurm."
# Fields we send that the SDK does not declare: it keeps them as extras.
ALLOWED_EXTRAS = {
    ("conversation.item.truncated", "transcript"),  # the words that were heard
    ("session.created", "session.id"),  # OpenAI sends both; the SDK's session model lacks them
    ("session.created", "session.object"),
    ("session.updated", "session.id"),
    ("session.updated", "session.object"),
    # this project's turn-taking settings (docs/orchestrator.md, Turns)
    *(
        (kind, f"session.audio.input.turn_detection.{name}")
        for kind in ("session.created", "session.updated")
        for name in ("preemptive", "interrupt_speech_ms")
    ),
}

USER, REPLY, RESP = "item_0a1b2c3d4e5f6071", "item_8f9e0d1c2b3a4958", "resp_1a2b3c4d5e6f7081"
TEXT = "Sure. It will be sunny in Lyon tomorrow."
AUDIO_IDS: dict[str, Any] = {"response_id": RESP, "item_id": REPLY}
REPLY_DONE = AssistantMessageItem.of(REPLY, TEXT, "completed")
REPLY_CUT = AssistantMessageItem.of(REPLY, "Sure. It will", "incomplete")
REPLY_TEXT = AssistantMessageItem.of(REPLY, TEXT, "completed", spoken=False)
TYPED = UserMessageItem(id=USER, status="completed", content=[InputTextContent(text="Book a table for two.")])
SYSTEM = SystemMessageItem(id=USER, status="completed", content=[InputTextContent(text="Be brief.")])
CALL, CALL_ID = "item_5a6b7c8d9e0f1a2b", "chatcmpl-tool-3f4e5d6c7b8a"
CALL_ARGS = '{"city": "Lyon", "day": "tomorrow"}'
CALL_STARTED = FunctionCallItem(
    id=CALL, status="in_progress", call_id=CALL_ID, name="get_weather", arguments=""
)
CALL_DONE = FunctionCallItem(
    id=CALL, status="completed", call_id=CALL_ID, name="get_weather", arguments=CALL_ARGS
)
CALL_CUT = FunctionCallItem(
    id=CALL, status="incomplete", call_id=CALL_ID, name="get_weather", arguments='{"ci'
)
CALL_OUTPUT = FunctionCallOutputItem(
    id="item_77", status="completed", call_id=CALL_ID, output='{"sky": "sunny"}'
)
CALL_IDS: dict[str, Any] = {"response_id": RESP, "item_id": CALL, "call_id": CALL_ID, "output_index": 1}
WEATHER = FunctionTool(
    name="get_weather",
    description="The weather of a city on a day.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def _samples() -> list[ServerEvent]:
    """At least one realistic instance of every event we send, every field filled."""
    voiced = Session(instructions="Answer in one sentence.", audio=Audio(output=AudioOutput(voice="marin")))
    manual = Session(audio=Audio(input=AudioInput(turn_detection=None)), max_output_tokens="inf")
    semantic = Session(
        audio=Audio(input=AudioInput(turn_detection=TurnDetection(type="semantic_vad", eagerness="high")))
    )
    with_tools = Session(tools=[WEATHER], tool_choice="required", output_modalities=["text"])
    named = Session(
        tools=[WEATHER, FunctionTool(name="book_table")], tool_choice=ToolChoiceFunction(name="book_table")
    )
    started = ResponseObject(
        id=RESP, status="in_progress", metadata={"topic": "weather"}, conversation_id="conv_5e6f7a8b"
    )
    cancelled = ResponseObject(
        id=RESP,
        status="cancelled",
        status_details=ResponseStatusDetails(type="cancelled", reason="turn_detected"),
        output=[REPLY_CUT],
        metadata=None,
        conversation_id="conv_5e6f7a8b",
    )
    failure = StatusError(type="server_error", code="tts_unavailable", message="TTS: connection refused")
    failed = ResponseObject(
        id=RESP,
        status="failed",
        status_details=ResponseStatusDetails(type="failed", error=failure),
        output=[REPLY_CUT],
        output_modalities=["audio"],
        metadata={"topic": "weather"},
        conversation_id="conv_5e6f7a8b",
    )
    completed = started.model_copy(update={"status": "completed", "output": [REPLY_DONE]})
    called = started.model_copy(update={"status": "completed", "output": [REPLY_DONE, CALL_DONE]})
    called_cut = cancelled.model_copy(update={"output": [REPLY_CUT, CALL_CUT]})
    out_of_band = ResponseObject(
        id=RESP, status="completed", output=[REPLY_TEXT], output_modalities=["text"], conversation_id=None
    )
    pcm = base64.b64encode(bytes(range(256)) * 15).decode()
    return [
        ErrorEvent.of("item_not_found", "no assistant item 'item_x'", "event_client_7", "item_id"),
        ErrorEvent.of("server_error", "the STT link failed", kind="server_error"),
        SessionCreated(session=voiced),
        SessionUpdated(session=manual),
        SessionUpdated(session=semantic),
        SessionUpdated(session=with_tools),
        SessionUpdated(session=named),
        InputAudioBufferSpeechStarted(item_id=USER, audio_start_ms=1280),
        InputAudioBufferSpeechStopped(item_id=USER, audio_end_ms=3760),
        InputAudioBufferCommitted(item_id=USER, previous_item_id=None),
        InputAudioBufferCommitted(item_id=USER, previous_item_id="item_ffeeddccbbaa9988"),
        InputAudioBufferCleared(),
        InputAudioBufferTimeoutTriggered(item_id=USER, audio_start_ms=3760, audio_end_ms=9760),
        ConversationItemAdded(previous_item_id=None, item=UserMessageItem.of(USER)),
        ConversationItemAdded(previous_item_id=USER, item=AssistantMessageItem.of(REPLY)),
        ConversationItemDone(previous_item_id=None, item=UserMessageItem.of(USER)),
        ConversationItemDone(previous_item_id=USER, item=REPLY_DONE),
        InputTranscriptionDelta(item_id=USER, content_index=0, delta="weather "),
        InputTranscriptionCompleted(
            item_id=USER, transcript="What's the weather tomorrow?", usage=DurationUsage(seconds=2.48)
        ),
        ConversationItemTruncated(
            item_id=REPLY, content_index=0, audio_end_ms=1520, transcript="Sure. It will"
        ),
        ConversationItemRetrieved(item=REPLY_CUT),
        ConversationItemAdded(previous_item_id=None, item=TYPED),
        ConversationItemDone(previous_item_id="root", item=SYSTEM),
        ConversationItemAdded(previous_item_id=REPLY, item=CALL_STARTED),
        ConversationItemDone(previous_item_id=REPLY, item=CALL_DONE),
        ConversationItemDone(previous_item_id=CALL, item=CALL_OUTPUT),
        ConversationItemRetrieved(item=CALL_CUT),
        ConversationItemDeleted(item_id=USER),
        ResponseCreated(response=started),
        ResponseDone(response=completed),
        ResponseDone(response=cancelled),
        ResponseDone(response=failed),
        ResponseDone(response=called),
        ResponseDone(response=called_cut),
        ResponseDone(response=out_of_band),
        OutputItemAdded(response_id=RESP, output_index=0, item=AssistantMessageItem.of(REPLY)),
        OutputItemAdded(response_id=RESP, output_index=1, item=CALL_STARTED),
        OutputItemDone(response_id=RESP, item=REPLY_CUT),
        OutputItemDone(response_id=RESP, output_index=1, item=CALL_DONE),
        FunctionCallArgumentsDelta(delta='{"city": "Ly', **CALL_IDS),
        FunctionCallArgumentsDone(name="get_weather", arguments=CALL_ARGS, **CALL_IDS),
        ContentPartAdded(part=ContentPart(), **AUDIO_IDS),
        ContentPartDone(part=ContentPart(transcript=TEXT), output_index=0, content_index=0, **AUDIO_IDS),
        OutputAudioDelta(delta=pcm, **AUDIO_IDS),
        OutputAudioDone(**AUDIO_IDS),
        OutputTranscriptDelta(delta="sunny ", **AUDIO_IDS),
        OutputTranscriptDone(transcript=TEXT, **AUDIO_IDS),
        ContentPartAdded(part=TextPart(), **AUDIO_IDS),
        ContentPartDone(part=TextPart(text=TEXT), **AUDIO_IDS),
        OutputTextDelta(delta="sunny", **AUDIO_IDS),
        OutputTextDone(text=TEXT, **AUDIO_IDS),
        OutputAudioBufferStarted(response_id=RESP),
        OutputAudioBufferStopped(response_id=RESP),
        OutputAudioBufferCleared(response_id=RESP),
        UnmuteOutputAudioClear(**AUDIO_IDS),
        UnmutePreparedReplyDropped(transcript="I would like to book"),
        UnmuteLatency(
            stages_ms={"stt_flush": 41.5, "llm_first_token": 230.0, "tts_first_audio": None}, **AUDIO_IDS
        ),
    ]


SAMPLES = _samples()
OPENAI_SAMPLES = [e for e in SAMPLES if not e.type.startswith(EXTENSION_PREFIX)]


def _sdk_types() -> set[str]:
    """Every `type` of the SDK's server-event union."""
    union, *_ = typing.get_args(RealtimeServerEvent)
    return {typing.get_args(model.model_fields["type"].annotation)[0] for model in typing.get_args(union)}


def _extras(value: object, path: str = "") -> set[str]:
    """The dotted paths of the fields an SDK object kept as undeclared extras."""
    found: set[str] = set()
    if isinstance(value, SdkModel):
        found |= {f"{path}{name}" for name in value.model_extra or {}}
        for name in type(value).model_fields:
            found |= _extras(getattr(value, name), f"{path}{name}.")
    elif isinstance(value, list):
        for element in value:
            found |= _extras(element, path)
    return found


def test_every_event_class_has_a_sample_and_a_unique_type():
    assert {type(e) for e in SAMPLES} == set(SERVER_EVENTS)
    kinds = [cls.model_fields["type"].default for cls in SERVER_EVENTS]
    assert len(set(kinds)) == len(kinds)
    for cls, kind in zip(SERVER_EVENTS, kinds, strict=True):
        assert typing.get_args(cls.model_fields["type"].annotation) == (kind,), cls.__name__


def test_our_openai_types_are_in_the_sdk_union_and_the_others_are_extensions():
    sdk = _sdk_types()
    ours = {cls.model_fields["type"].default for cls in SERVER_EVENTS}
    extensions = {kind for kind in ours if kind not in sdk}
    assert extensions == {
        "unmute_slurm.output_audio.clear",
        "unmute_slurm.latency",
        "unmute_slurm.prepared_reply.dropped",
    }
    assert all(kind.startswith(EXTENSION_PREFIX) for kind in extensions)
    assert not any(kind.startswith(EXTENSION_PREFIX) for kind in sdk)


@pytest.mark.parametrize("event", OPENAI_SAMPLES, ids=lambda e: e.type)
def test_the_sdk_accepts_the_event_and_keeps_every_field(event: ServerEvent):
    text = event.wire()
    parsed = SDK_EVENTS.validate_json(text)
    assert parsed.type == event.type
    # Equal both ways: nothing dropped, nothing coerced, nothing the SDK filled in.
    assert parsed.model_dump(mode="json", exclude_unset=True) == json.loads(text)
    unknown = {(event.type, path) for path in _extras(parsed)}
    assert unknown <= ALLOWED_EXTRAS


def test_wire_is_compact_json_that_keeps_none_fields():
    event = InputAudioBufferCommitted(item_id=USER, previous_item_id=None)
    text = event.wire()
    assert json.loads(text) == {
        "event_id": event.event_id,
        "type": "input_audio_buffer.committed",
        "item_id": USER,
        "previous_item_id": None,
    }
    assert ", " not in text and ": " not in text
    assert event.event_id.startswith("event_")
    assert InputAudioBufferCleared().event_id != InputAudioBufferCleared().event_id


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: AssistantMessageItem.of(REPLY, TEXT, "cancelled"), id="item-status"),
        pytest.param(lambda: UserMessageItem.of(USER, "failed"), id="user-item-status"),
        pytest.param(lambda: ResponseObject(id=RESP, status="interrupted"), id="response-status"),
        pytest.param(lambda: ResponseStatusDetails(type="cancelled", reason="user_left"), id="cancel-reason"),
        pytest.param(lambda: ContentPart(type="output_audio", transcript=TEXT), id="part-type"),
        pytest.param(lambda: ErrorEvent.of("oops", "bad", kind="fatal"), id="error-kind"),
        pytest.param(
            lambda: ConversationItemDone(
                previous_item_id=None,
                item={"id": USER, "type": "message", "role": "tool", "status": "completed", "content": []},
            ),
            id="item-role",
        ),
        pytest.param(
            lambda: FunctionCallItem(id=CALL, status="cancelled", call_id=CALL_ID, name="f", arguments=""),
            id="call-status",
        ),
        pytest.param(lambda: TextPart(type="output_text", text=TEXT), id="text-part-type"),
        pytest.param(lambda: OutputAudioDelta(delta="", extra_field=1, **AUDIO_IDS), id="unknown-field"),
        pytest.param(
            lambda: ResponseCreated(
                response=ResponseObject(id=RESP, status="in_progress"), type="response.done"
            ),
            id="wrong-type",
        ),
    ],
)
def test_values_a_client_would_refuse_cannot_be_built(make):
    with pytest.raises(pydantic.ValidationError) as refused:
        make()
    assert len(refused.value.errors()) == 1  # refused for that value alone
