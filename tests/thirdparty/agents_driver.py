"""The `openai-agents` SDK's Realtime WebSocket model against our `/v1/realtime`: a spoken turn,
a barge-in, and an interrupt that cancels a response by its id.

The model is the strictest client we drive: it validates every server event against the
`openai` package's GA event union, and on a failure it logs "Failed to validate server event"
and drops the event. Here the driver is the app around the model: it streams the microphone,
plays the reply audio in real time into the SDK's `RealtimePlaybackTracker` (from which the
model computes its `conversation.item.truncate`), and sends the interrupt that the SDK's own
`RealtimeSession` sends when an output guardrail stops a reply (`force_response_cancel` with the
reply's `response_id`).

    .venv-clients/bin/python -m tests.thirdparty.agents_driver --url ws://... --token T --out r.json
"""

from __future__ import annotations

import argparse
import array
import asyncio
import itertools
import logging
import time
from collections import deque
from typing import Any

import pydantic
from agents.realtime import (
    OpenAIRealtimeWebSocketModel,
    RealtimeModelListener,
    RealtimePlaybackTracker,
)
from agents.realtime.model_events import (
    RealtimeModelAudioEvent,
    RealtimeModelAudioInterruptedEvent,
    RealtimeModelErrorEvent,
    RealtimeModelEvent,
    RealtimeModelExceptionEvent,
    RealtimeModelInputAudioTranscriptionCompletedEvent,
    RealtimeModelRawServerEvent,
    RealtimeModelTranscriptDeltaEvent,
)
from agents.realtime.model_inputs import RealtimeModelSendAudio, RealtimeModelSendInterrupt
from openai.types.realtime.realtime_client_event import RealtimeClientEvent

from tests.thirdparty.driver_common import (
    CHUNK_S,
    MIN_AUDIO_S,
    Microphone,
    run,
    speech,
    stop,
    until,
)

API_RATE = 24_000  # the SDK sends what it is given, and the API takes PCM16 at 24 kHz only


class Upsampler:
    """16 kHz PCM16 to 24 kHz, chunk by chunk: linear interpolation at a 3:2 ratio.

    Output sample k sits at input position k * 2/3 - 1, one input sample late, so that each
    chunk needs only the previous chunk's last sample and never the next chunk's first.
    """

    def __init__(self) -> None:
        self.previous = 0

    def __call__(self, pcm: bytes) -> bytes:
        x = array.array("h", pcm)
        out = array.array("h")
        before = self.previous
        for a, b in zip(x[0::2], x[1::2], strict=True):
            out.extend((before, round(before / 3 + a * 2 / 3), round(a * 2 / 3 + b / 3)))
            before = b
        self.previous = before
        return out.tobytes()


class Speaker:
    """Plays reply audio in real time, as a device would, and tells the SDK's playback tracker
    what was heard; an interrupt drops what is still queued."""

    def __init__(self, tracker: RealtimePlaybackTracker) -> None:
        self.tracker = tracker
        self.queue: deque[tuple[str, str, int, bytes]] = deque()  # response, item, part, PCM
        self.played_s: dict[str, float] = {}  # by response id, in order of first audio
        self.items: dict[str, str] = {}  # response id -> its audio item id

    def on_audio(self, event: RealtimeModelAudioEvent) -> None:
        self.played_s.setdefault(event.response_id, 0.0)
        self.items[event.response_id] = event.item_id
        self.queue.append((event.response_id, event.item_id, event.content_index, event.data))

    def on_interrupted(self) -> None:
        self.queue.clear()

    async def run(self) -> None:
        """Play CHUNK_S of queued audio per CHUNK_S of wall time until cancelled."""
        start = time.monotonic()
        for n in itertools.count():
            budget = int(API_RATE * CHUNK_S) * 2
            while budget and self.queue:
                response, item, part, pcm = self.queue.popleft()
                played, rest = pcm[:budget], pcm[budget:]
                if rest:
                    self.queue.appendleft((response, item, part, rest))
                self.tracker.on_play_bytes(item, part, played)
                self.played_s[response] += len(played) / 2 / API_RATE
                budget -= len(played)
            await asyncio.sleep(max(0.0, start + (n + 1) * CHUNK_S - time.monotonic()))

    def playing(self, n: int) -> str | None:
        """The response id of the `n`-th reply (from 0), once MIN_AUDIO_S of it has played."""
        ids = list(self.played_s)
        return ids[n] if len(ids) > n and self.played_s[ids[n]] >= MIN_AUDIO_S else None


def validation_errors(error: pydantic.ValidationError) -> list[str]:
    """One line per failed field, its location led by the event type (the union's tag).

    Inputs are shown only when scalar: a missing field's input is the whole event, audio
    included, and would make every audio delta's failure a distinct line.
    """
    lines = []
    for detail in error.errors(include_url=False):
        if detail["type"] == "union_tag_invalid":  # its message lists every GA event type
            lines.append(f"invalid server event: type {detail['ctx']['tag']!r} is not a GA server event")
            continue
        value = detail.get("input")
        shown = "" if isinstance(value, dict | list) else f" (got {value!r})"
        lines.append(f"invalid server event {'.'.join(map(str, detail['loc']))}: {detail['msg']}{shown}")
    return lines


def find(events: list[dict[str, Any]], kind: str, **fields: Any) -> dict[str, Any] | None:
    """The first of `events` of type `kind` whose top-level fields have these values."""
    matches = (e for e in events if e["type"] == kind and all(e.get(k) == v for k, v in fields.items()))
    return next(matches, None)


class Conversation(RealtimeModelListener):
    """What the model reports: every server event as sent, transcripts, reply audio (handed to
    the speaker), and every error; a server event the SDK rejected arrives here as a
    `RealtimeModelErrorEvent` holding the pydantic error."""

    def __init__(self, speaker: Speaker, errors: list[str]) -> None:
        self.speaker = speaker
        self.errors = errors
        self.server_events: list[dict[str, Any]] = []  # audio deltas left out
        self.server_event_types: set[str] = set()  # audio deltas included
        self.transcripts: list[str] = []
        self.reply_text: dict[str, str] = {}  # response id -> its audio transcript

    async def on_event(self, event: RealtimeModelEvent) -> None:
        if isinstance(event, RealtimeModelRawServerEvent):
            self.server_event_types.add(event.data.get("type", "(none)"))
            if event.data.get("type") != "response.output_audio.delta":
                self.server_events.append(event.data)
        elif isinstance(event, RealtimeModelAudioEvent):
            self.speaker.on_audio(event)
        elif isinstance(event, RealtimeModelAudioInterruptedEvent):
            self.speaker.on_interrupted()
        elif isinstance(event, RealtimeModelInputAudioTranscriptionCompletedEvent):
            if event.transcript.strip():
                self.transcripts.append(event.transcript.strip())
        elif isinstance(event, RealtimeModelTranscriptDeltaEvent):
            self.reply_text[event.response_id] = self.reply_text.get(event.response_id, "") + event.delta
        elif isinstance(event, RealtimeModelErrorEvent):
            if isinstance(event.error, pydantic.ValidationError):
                self.errors.extend(validation_errors(event.error))
            else:
                self.errors.append(f"server error: {event.error}")
        elif isinstance(event, RealtimeModelExceptionEvent):
            self.errors.append(f"{event.context}: {event.exception!r}")

    def response_done(self, response_id: str) -> dict[str, Any] | None:
        """The `response` of the response.done that ended `response_id`."""
        done = (e["response"] for e in self.server_events if e["type"] == "response.done")
        return next((r for r in done if r.get("id") == response_id), None)


class RecordingModel(OpenAIRealtimeWebSocketModel):
    """The SDK's model, unchanged, keeping each client event it sends (audio appends aside):
    the truncate and cancel under test are decided inside the model, not by the driver."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[dict[str, Any]] = []

    async def _send_raw_message(self, event: RealtimeClientEvent) -> None:
        if event.type != "input_audio_buffer.append":
            self.sent.append(event.model_dump(exclude_unset=True))
        await super()._send_raw_message(event)


class SdkLog(logging.Handler):
    """The SDK reports a server event it could not validate only in its log, at ERROR."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.errors = errors

    def emit(self, record: logging.LogRecord) -> None:
        self.errors.append(record.getMessage())


async def interrupted(
    step: str, model: RecordingModel, conv: Conversation, response_id: str
) -> dict[str, Any]:
    """Wait for the model's truncate of `response_id`'s audio item, the server's
    `conversation.item.truncated` for it, and the response's `response.done`; what they said."""
    item_id = conv.speaker.items[response_id]
    truncate = await until(
        f"{step}: conversation.item.truncate sent",
        lambda: find(model.sent, "conversation.item.truncate", item_id=item_id),
    )
    truncated = await until(
        f"{step}: conversation.item.truncated",
        lambda: find(conv.server_events, "conversation.item.truncated", item_id=item_id),
    )
    done = await until(f"{step}: response.done", lambda: conv.response_done(response_id))
    return {
        "played_s": round(conv.speaker.played_s[response_id], 2),
        "truncate_audio_end_ms": truncate["audio_end_ms"],
        "truncated_audio_end_ms": truncated["audio_end_ms"],
        "status": done.get("status"),
        "status_details": done.get("status_details"),
    }


async def scenario(args: argparse.Namespace, report: dict[str, Any]) -> None:
    logging.getLogger("openai.agents").addHandler(SdkLog(report["errors"]))
    tracker = RealtimePlaybackTracker()
    speaker = Speaker(tracker)
    conv = Conversation(speaker, report["errors"])
    model = RecordingModel()
    model.add_listener(conv)
    # The SDK's own authentication for OpenAI: the key as `Authorization: Bearer`.
    await model.connect(
        {"url": f"{args.url}/v1/realtime", "api_key": args.token, "playback_tracker": tracker}
    )
    upsample = Upsampler()

    async def send(pcm: bytes) -> None:
        await model.send_event(RealtimeModelSendAudio(audio=upsample(pcm)))

    mic = Microphone(send)
    streaming = asyncio.create_task(mic.run())
    playing = asyncio.create_task(speaker.run())
    try:
        # A spoken turn, answered with audio and its transcript.
        mic.say(speech())
        report["transcript"] = (await until("transcript of the first turn", lambda: conv.transcripts))[0]
        first = await until("audio of the first reply", lambda: speaker.playing(0))
        report["reply_text"] = await until(
            "transcript of the first reply", lambda: conv.reply_text.get(first)
        )
        # Barge-in: the user speaks over the reply. On speech_started the model truncates the
        # item where playback stands; the server, set to interrupt_response, cancels the reply.
        mic.say(speech())
        report["barge_in"] = await interrupted("barge-in", model, conv, first)
        await until("transcript of the turn that barged in", lambda: len(conv.transcripts) >= 2)
        report["next_transcript"] = conv.transcripts[1]
        second = await until("audio of the reply after the barge-in", lambda: speaker.playing(1))
        # The interrupt: truncate at the playback point, then response.cancel naming the reply.
        await model.send_event(RealtimeModelSendInterrupt(force_response_cancel=True, response_id=second))
        cancel = await until("response.cancel sent", lambda: find(model.sent, "response.cancel"))
        report["cancel_response_id_matches"] = cancel.get("response_id") == second
        report["interrupt"] = await interrupted("interrupt", model, conv, second)
    finally:
        report["server_event_types"] = sorted(conv.server_event_types)
        await stop(streaming)
        await stop(playing)
        await model.close()


if __name__ == "__main__":
    run(scenario)
