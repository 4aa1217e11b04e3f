"""Client events -> what the pipeline takes: session settings and reply requests."""

from __future__ import annotations

from orchestrator.pipeline.config import ResponseRequest, SessionConfig, TurnDetectionConfig
from orchestrator.realtime.client_events import ResponseParams, SessionPatch
from orchestrator.realtime.inbound_items import (
    check_choice,
    context_entry,
    function_tools,
    pipeline_choice,
    pipeline_tools,
)
from orchestrator.realtime.session_model import Modality, Session


def modalities(asked: list[Modality]) -> list[Modality]:
    """["audio"] (its transcript is the text) unless only text was asked for."""
    return ["audio"] if "audio" in asked else ["text"]


def apply_session_update(session: Session, patch: SessionPatch, event_id: str | None = None) -> None:
    """Change the fields a `session.update` set (validated by its model); all or nothing."""
    tools = session.tools if patch.tools is None else function_tools(patch.tools, event_id)
    choice = session.tool_choice if patch.tool_choice is None else patch.tool_choice
    check_choice(choice, tools, event_id, "session.tool_choice")
    session.tools, session.tool_choice = tools, choice
    if patch.output_modalities is not None:
        session.output_modalities = modalities(patch.output_modalities)
    if patch.instructions is not None:
        session.instructions = patch.instructions
    if patch.max_output_tokens is not None:
        session.max_output_tokens = patch.max_output_tokens
    audio = patch.audio
    if audio is not None and audio.input is not None and "turn_detection" in audio.input.model_fields_set:
        session.audio.input.turn_detection = audio.input.turn_detection  # None: manual commits
    if audio is not None and audio.output is not None and audio.output.voice is not None:
        session.audio.output.voice = audio.output.voice


def pipeline_config(session: Session) -> SessionConfig:
    """The pipeline's view of the session object the client sees."""
    detection = session.audio.input.turn_detection
    return SessionConfig(
        instructions=session.instructions or None,
        max_output_tokens=None if session.max_output_tokens == "inf" else session.max_output_tokens,
        voice=session.audio.output.voice,
        tools=pipeline_tools(session.tools),
        tool_choice=pipeline_choice(session.tool_choice),
        text_only=session.output_modalities == ["text"],
        turn_detection=None
        if detection is None
        else TurnDetectionConfig(
            kind=detection.type,
            threshold=detection.threshold,
            silence_duration_ms=detection.silence_duration_ms,
            eagerness=detection.eagerness,
            idle_timeout_ms=detection.idle_timeout_ms,
            create_response=detection.create_response,
            interrupt_response=detection.interrupt_response,
            preemptive=detection.preemptive,
            interrupt_speech_ms=detection.interrupt_speech_ms,
        ),
    )


def response_request(
    params: ResponseParams | None, session: Session, max_audio_chars: int, event_id: str | None = None
) -> ResponseRequest:
    """What one `response.create` asked for: instructions, token cap, voice, metadata, tools,
    modality, whether it joins the conversation, and the context it reads."""
    if params is None:
        return ResponseRequest()
    voice = (
        params.audio.output.voice if params.audio is not None and params.audio.output is not None else None
    )
    tools = None if params.tools is None else function_tools(params.tools, event_id)
    check_choice(
        params.tool_choice, session.tools if tools is None else tools, event_id, "response.tool_choice"
    )
    tokens = params.max_output_tokens
    context = None
    if params.input is not None:
        context = tuple(context_entry(p, max_audio_chars, event_id) for p in params.input)
    return ResponseRequest(
        instructions=params.instructions,
        max_output_tokens=tokens if isinstance(tokens, int) else None,
        unlimited_tokens=tokens == "inf",
        voice=voice,
        metadata=params.metadata,
        tools=None if tools is None else pipeline_tools(tools),
        tool_choice=None if params.tool_choice is None else pipeline_choice(params.tool_choice),
        text_only=None
        if params.output_modalities is None
        else modalities(params.output_modalities) == ["text"],
        out_of_band=params.conversation == "none",
        context=context,
    )
