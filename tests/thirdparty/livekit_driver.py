"""LiveKit's OpenAI realtime plugin against our `/v1/realtime`: a spoken turn, a barge-in, the
library's own `interrupt()`, and `generate_reply()`.

`RealtimeModel(...).session()` is what `AgentSession` drives; here the driver is the agent: it
pushes microphone frames, reads each generation's audio stream, and calls the session's
methods, so no LiveKit server or room is needed. The model keeps its defaults, so it asks for
OpenAI's voice `marin`, as every LiveKit agent does unless told otherwise.

    .venv-clients/bin/python -m tests.thirdparty.livekit_driver --url ws://... --token T --out r.json
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from livekit import rtc
from livekit.agents import llm
from livekit.agents.metrics import RealtimeModelMetrics
from livekit.plugins.openai.realtime import RealtimeModel

from tests.thirdparty.driver_common import (
    MIN_AUDIO_S,
    RATE,
    Microphone,
    StepTimeout,
    run,
    speech,
    stop,
    until,
)


class ErrorLog(logging.Handler):
    """The plugin reports a handler that failed on a server event only in its log."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(logging.ERROR)
        self.errors = errors

    def emit(self, record: logging.LogRecord) -> None:
        self.errors.append(record.getMessage() + (f": {record.exc_info[1]!r}" if record.exc_info else ""))


class Generations:
    """Each generation's audio as the agent would play it, and how each response ended."""

    def __init__(self) -> None:
        self.audio_s: dict[str, float] = {}  # by response id, in creation order
        self.cancelled: dict[str, bool] = {}  # response id -> cancelled, once response.done came
        self.transcripts: list[str] = []
        self._readers: set[asyncio.Task[None]] = set()

    def on_generation(self, event: llm.GenerationCreatedEvent) -> None:
        assert event.response_id is not None
        self.audio_s[event.response_id] = 0.0
        task = asyncio.create_task(self._read(event.response_id, event))
        self._readers.add(task)
        task.add_done_callback(self._readers.discard)

    async def _read(self, response_id: str, event: llm.GenerationCreatedEvent) -> None:
        async for message in event.message_stream:
            async for frame in message.audio_stream:
                self.audio_s[response_id] += frame.samples_per_channel / frame.sample_rate

    def on_transcript(self, event: llm.InputTranscriptionCompleted) -> None:
        if event.is_final and event.transcript.strip():
            self.transcripts.append(event.transcript.strip())

    def on_metrics(self, metrics: Any) -> None:
        if isinstance(metrics, RealtimeModelMetrics):
            self.cancelled[metrics.request_id] = metrics.cancelled

    async def aclose(self) -> None:
        """Wait for the readers, which end when the session closes the generations' streams."""
        await asyncio.gather(*self._readers)

    def playing(self, n: int) -> str | None:
        """The response id of the `n`-th generation (from 0), once it has played MIN_AUDIO_S."""
        ids = list(self.audio_s)
        return ids[n] if len(ids) > n and self.audio_s[ids[n]] >= MIN_AUDIO_S else None


async def scenario(args: argparse.Namespace, report: dict[str, Any]) -> None:
    logging.getLogger("livekit").addHandler(ErrorLog(report["errors"]))
    model = RealtimeModel(base_url=f"{args.url}/v1", api_key=args.token)
    session = model.session()
    gens = Generations()
    session.on("generation_created", gens.on_generation)
    session.on("input_audio_transcription_completed", gens.on_transcript)
    session.on("metrics_collected", gens.on_metrics)
    session.on("error", lambda e: report["errors"].append(f"{e.error}: {getattr(e.error, 'body', '')}"))

    async def send(pcm: bytes) -> None:
        session.push_audio(rtc.AudioFrame(pcm, RATE, 1, len(pcm) // 2))

    mic = Microphone(send)
    streaming = asyncio.create_task(mic.run())
    try:
        # A spoken turn.
        mic.say(speech())
        report["transcript"] = (await until("transcript of the first turn", lambda: gens.transcripts))[0]
        first = await until("audio of the first reply", lambda: gens.playing(0))
        # Barge-in: the user speaks over the reply; the server cancels it, and the
        # interrupting speech is the next turn.
        mic.say(speech())
        await until("response.done of the interrupted reply", lambda: first in gens.cancelled)
        report["interrupted_audio_s"] = round(gens.audio_s[first], 2)
        report["interrupted_cancelled"] = gens.cancelled[first]
        await until("transcript of the turn that barged in", lambda: len(gens.transcripts) >= 2)
        report["next_transcript"] = gens.transcripts[1]
        second = await until("audio of the reply after the barge-in", lambda: gens.playing(1))
        report["next_audio_s"] = round(gens.audio_s[second], 2)
        # The agent's own interrupt (response.cancel), then a reply it asks for.
        session.interrupt()
        await until("response.done after interrupt()", lambda: second in gens.cancelled)
        report["interrupt_cancelled"] = gens.cancelled[second]
        try:
            created = await session.generate_reply()
        except llm.RealtimeError as exc:
            raise StepTimeout(f"generate_reply: {exc}") from None
        response = created.response_id
        assert response is not None
        await until("audio of generate_reply's reply", lambda: gens.audio_s[response] >= MIN_AUDIO_S)
        report["generate_reply_audio_s"] = round(gens.audio_s[response], 2)
    finally:
        await stop(streaming)
        await session.aclose()
        await gens.aclose()
        await model.aclose()


if __name__ == "__main__":
    run(scenario)
