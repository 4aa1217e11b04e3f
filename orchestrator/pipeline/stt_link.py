"""The session's link to the STT: one stream kept up for the session's whole life.

It reconnects with backoff when the service goes away, holds the audio that arrives
while the first connection is made, and flushes on request: a `Marker` goes out after
the audio, and the flush is over when the STT echoes it, i.e. once everything before
it is transcribed. Every `Step` is a frame of the audio sent (the STT's own flush silence
has none), so turn detection sees the user's audio and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import numpy as np

from kit.audio import FRAME_SECONDS, SAMPLE_RATE
from kit.protocol import MarkerOut, Step, WireMessage
from orchestrator.clients.errors import BackendError, BackendTimeout
from orchestrator.pipeline.backends import Backends, SttConnection

logger = logging.getLogger(__name__)

# A Marker's flush costs the STT's model delay in silence or a decode after whatever audio is
# still queued; beyond that backlog, 5 s more means the STT is stuck. (3 s was too short for
# Whisper on 2 busy cores: a final decode can queue behind other streams' decodes, and one
# flush in 136 of bench/turns.py, and a browser test beside other suites, went past it.)
FLUSH_TIMEOUT_S = 5.0
CONNECT_BUFFER_S = 30.0  # audio kept while the STT stream is being (re)connected
RECONNECT_BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)


class SttLink:
    """Feeds audio to the STT and hands every other message (words, steps) to `on_message`.

    `on_down(error)` is called once per outage (the session reports it); a flush that
    fails or times out raises `BackendError` to its caller, who decides what it costs.
    """

    def __init__(
        self,
        backends: Backends,
        on_message: Callable[[WireMessage], None],
        on_down: Callable[[BackendError], None],
        session_id: str,
    ) -> None:
        self._backends = backends
        self._on_message = on_message
        self._on_down = on_down
        self._session_id = session_id
        self._stream: SttConnection | None = None
        self._up = asyncio.Event()
        self.down: str | None = None  # why the STT is unreachable, while it is
        self._held: list[np.ndarray] = []  # arrived before the stream was up
        self._markers: dict[int, asyncio.Future[None]] = {}
        self._marker_seq = 0
        self._sent_s = 0.0  # audio sent on the current stream ...
        self._done_s = 0.0  # ... and how much of it the STT has stepped through

    async def run(self) -> None:
        """Keep a stream up until cancelled; the stream is closed on every way out."""
        attempt = 0
        while True:
            try:
                async with await self._backends.open_stt() as stream:
                    attempt = 0
                    await self._serve(stream)
            except BackendError as exc:
                self._fail_markers()
                if self.down is None:
                    self.down = str(exc)
                    self._on_down(exc)
                await asyncio.sleep(RECONNECT_BACKOFF_S[min(attempt, len(RECONNECT_BACKOFF_S) - 1)])
                attempt += 1

    async def _serve(self, stream: SttConnection) -> None:
        held, self._held = self._held, []
        self._sent_s = self._done_s = 0.0
        for pcm in held:
            await stream.send_audio(pcm)
            self._sent_s += pcm.size / SAMPLE_RATE
        self._stream = stream
        self._up.set()
        try:
            if self.down is not None:
                logger.info("STT back", extra={"session": self._session_id})
            self.down = None
            async for message in stream.events():
                if isinstance(message, Step):
                    self._done_s += FRAME_SECONDS
                if isinstance(message, MarkerOut):
                    self._marker_back(message.id)
                else:
                    self._on_message(message)
        finally:
            self._stream = None
            self._up.clear()

    @property
    def heard_s(self) -> float:
        """How much of the current stream's audio the STT has stepped through: the clock its
        words' `start_time` is on."""
        return self._done_s

    @property
    def flushing(self) -> bool:
        """A flush is under way (the words that arrive now are the flushed turn's)."""
        return bool(self._markers)

    def _marker_back(self, marker_id: int) -> None:
        future = self._markers.pop(marker_id, None)
        if future is not None and not future.done():
            future.set_result(None)

    async def send(self, pcm: np.ndarray) -> None:
        """Forward audio; held until the first stream is up, dropped while the STT is down
        (the client was told), never raised: the reading side sees the same loss."""
        stream = self._stream
        if stream is None:
            held = sum(p.size for p in self._held) / SAMPLE_RATE
            if self.down is None and held < CONNECT_BUFFER_S:
                self._held.append(pcm)
            return
        with contextlib.suppress(BackendError):
            await stream.send_audio(pcm)
            self._sent_s += pcm.size / SAMPLE_RATE

    async def flush(self) -> None:
        """Return once the STT has transcribed all audio sent so far; `BackendError` if it cannot."""
        if self._stream is None and self.down is None:
            # Still connecting: the held audio goes out on connect, so wait for that.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._up.wait(), FLUSH_TIMEOUT_S)
        stream = self._stream
        if stream is None:
            return  # down: the words so far are all there is
        self._marker_seq += 1
        seq = self._marker_seq
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._markers[seq] = future
        await stream.send_marker(seq)
        # A client may commit seconds of audio sent in one burst: the STT has to get
        # through that backlog first, so it counts on top of the stuck-STT margin.
        try:
            backlog = self._sent_s - self._done_s  # audio not stepped through yet
            await asyncio.wait_for(future, FLUSH_TIMEOUT_S + max(0.0, backlog))
        except TimeoutError:
            raise BackendTimeout("STT", f"flush took over {FLUSH_TIMEOUT_S:.0f} s") from None
        finally:
            self._markers.pop(seq, None)

    def _fail_markers(self) -> None:
        for future in self._markers.values():
            if not future.done():
                future.set_exception(BackendError("STT", "connection lost during a flush"))
        self._markers.clear()
