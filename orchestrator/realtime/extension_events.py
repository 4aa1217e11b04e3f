"""This project's own server events, under the ``unmute_slurm.`` prefix.

They are sent only to clients that ask for them (``?extensions=unmute_slurm`` on the
WebSocket URL, as the UI does): strict OpenAI clients refuse event types they do not know.
"""

from __future__ import annotations

from typing import Literal

from orchestrator.realtime.server_items import ServerEvent


class UnmuteOutputAudioClear(ServerEvent):
    """Sent on barge-in or cancel: the client must drop the reply's audio it has queued for playback."""

    type: Literal["unmute_slurm.output_audio.clear"] = "unmute_slurm.output_audio.clear"
    response_id: str
    item_id: str


class UnmuteLatency(ServerEvent):
    """Sent once a reply's first audio went out: the turn's stage timings (None: stage not reached)."""

    type: Literal["unmute_slurm.latency"] = "unmute_slurm.latency"
    response_id: str
    item_id: str
    stages_ms: dict[str, float | None]


class UnmutePreparedReplyDropped(ServerEvent):
    """Sent when a reply prepared at a likely end of turn was dropped unheard (the user went on)."""

    type: Literal["unmute_slurm.prepared_reply.dropped"] = "unmute_slurm.prepared_reply.dropped"
    transcript: str
