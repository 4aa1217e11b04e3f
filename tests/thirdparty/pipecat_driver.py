"""Pipecat's `OpenAIRealtimeLLMService` against our `/v1/realtime`: a spoken turn, then a barge-in.

The service runs in a real Pipecat pipeline (its own connect, session.update, receive task and
frame handling); the only stand-ins are the transport's two ends: a microphone that queues
`InputAudioRawFrame`s, and the worker's frame-reached events, which see what a transport would
play (`TTSAudioRawFrame`s) and the transcriptions the service pushes upstream.

    .venv-clients/bin/python -m tests.thirdparty.pipecat_driver --url ws://... --token T --out r.json
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from loguru import logger
from pipecat.frames.frames import (
    InputAudioRawFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.services.openai.realtime.llm import OpenAIRealtimeLLMService
from pipecat.workers.runner import WorkerRunner

from tests.thirdparty.driver_common import MIN_AUDIO_S, RATE, Microphone, run, speech, stop, until


class Replies:
    """What a transport would play (each reply's audio from its TTSStartedFrame on), what the
    service transcribed, and each assistant item's status as response.done gave it."""

    def __init__(self) -> None:
        self.audio_s: list[float] = []  # one entry per reply, in order
        self.transcripts: list[str] = []
        self.item_statuses: list[str | None] = []

    async def on_downstream(self, _worker: PipelineWorker, frame: Any) -> None:
        if isinstance(frame, TTSStartedFrame):
            self.audio_s.append(0.0)
        elif isinstance(frame, TTSAudioRawFrame) and self.audio_s:
            self.audio_s[-1] += len(frame.audio) / 2 / frame.sample_rate

    async def on_upstream(self, _worker: PipelineWorker, frame: Any) -> None:
        if isinstance(frame, TranscriptionFrame) and frame.text.strip():
            self.transcripts.append(frame.text.strip())

    async def on_item_updated(self, _service: Any, _item_id: str, item: Any) -> None:
        if item is not None and item.role == "assistant":
            self.item_statuses.append(item.status)

    def playing(self, n: int) -> bool:
        """Reply `n` (from 0) has played at least MIN_AUDIO_S."""
        return len(self.audio_s) > n and self.audio_s[n] >= MIN_AUDIO_S


async def scenario(args: argparse.Namespace, report: dict[str, Any]) -> None:
    logger.remove()  # Pipecat logs every frame link at DEBUG; the test shows warnings and errors
    logger.add(sys.stderr, level="WARNING")
    # The service reports a dead receive task or a rejected event only in its log.
    logger.add(lambda message: report["errors"].append(message.record["message"]), level="ERROR")
    service = OpenAIRealtimeLLMService(api_key=args.token, base_url=f"{args.url}/v1/realtime")
    replies = Replies()
    service.add_event_handler("on_conversation_item_updated", replies.on_item_updated)
    worker = PipelineWorker(Pipeline([service]), idle_timeout_secs=None, enable_rtvi=False)
    worker.set_reached_downstream_filter((TTSStartedFrame, TTSAudioRawFrame))
    worker.set_reached_upstream_filter((TranscriptionFrame,))
    worker.add_event_handler("on_frame_reached_downstream", replies.on_downstream)
    worker.add_event_handler("on_frame_reached_upstream", replies.on_upstream)
    worker.add_event_handler("on_pipeline_error", lambda _w, f: report["errors"].append(f.error))

    async def send(pcm: bytes) -> None:
        await worker.queue_frame(InputAudioRawFrame(audio=pcm, sample_rate=RATE, num_channels=1))

    mic = Microphone(send)
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    running = asyncio.create_task(runner.run())
    streaming = asyncio.create_task(mic.run())
    try:
        mic.say(speech())
        report["transcript"] = (await until("transcript of the first turn", lambda: replies.transcripts))[0]
        await until("audio of the first reply", lambda: replies.playing(0))
        # Barge-in: the user speaks while the reply plays; the server cancels it and the
        # interrupting speech is the next turn.
        mic.say(speech())
        status = await until("response.done of the interrupted reply", lambda: replies.item_statuses)
        report["interrupted_audio_s"] = round(replies.audio_s[0], 2)
        report["interrupted_item_status"] = status[0]
        await until("transcript of the turn that barged in", lambda: len(replies.transcripts) >= 2)
        report["next_transcript"] = replies.transcripts[1]
        await until("audio of the reply after the barge-in", lambda: replies.playing(1))
        report["next_audio_s"] = round(replies.audio_s[1], 2)
    finally:
        await stop(streaming)
        await worker.cancel()
        await running


if __name__ == "__main__":
    run(scenario)
