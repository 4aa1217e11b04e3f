"""One moshi-server WebSocket stream, the same way for both model services.

accept → a slot, or `Error("no free channels")` and a close → `Ready` → one TaskGroup:
the send loop (the slot's outbox to the socket) is its task, the receive loop its body →
the slot is handed back, on every way out. The idle timeout, the per-connection message
budget and the protocol-error count live here; a service says only how it handles a client
message (`handle`) and how it puts an outgoing one on the wire (`encode`).

A `None` in the outbox ends the stream: the batcher puts it there when the slot is closed
(the client left, the receive loop stopped, a step failed, shutdown) or, for the TTS, when
the audio after `Eos` is out. The send loop then waits until the slot is released (a TTS
stream the engine is still generating is stopped at its next step) and closes the socket
with `close_code`: a client that has seen the close, and opens the next stream at once,
finds its slot free.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from typing import Generic, Protocol, TypeVar

from fastapi import WebSocket, WebSocketDisconnect
from starlette.types import Message

from kit.protocol import Error, MessageParser, Ready, WireMessage
from kit.ratelimit import POLICY_VIOLATION, MessageBudget, RateLimitExceeded
from services.common.metrics import StreamMetrics
from services.common.steploop import StepLoop, Stream

logger = logging.getLogger(__name__)

NO_FREE_CHANNELS = "no free channels"
#: How long the send loop may take to send what is queued once the client side has ended
#: (a client that does not read must not hold its session open).
DRAIN_TIMEOUT_S = 2.0
#: How long the close may wait for the engine to let go of the slot (one step, even a slow one).
RELEASE_TIMEOUT_S = 2.0
#: What a send to a client that has gone raises (Starlette, uvicorn, the socket).
CLIENT_GONE = (WebSocketDisconnect, RuntimeError, OSError)

S = TypeVar("S", bound=Stream)


class StreamSettings(Protocol):
    """The settings the skeleton reads (both services' settings have them)."""

    idle_timeout_s: float
    max_message_bytes: int
    max_messages_per_second: float


class StreamEnded(Exception):
    """The send loop closed the socket (the stream is over) while the receive loop still ran."""


class StreamSession(abc.ABC, Generic[S]):
    """A client's stream, from `accept` to the slot being handed back."""

    #: Whether the client reads wire messages; a TTS client of raw PCM gets no `Ready` and no `Error`.
    sends_messages = True

    def __init__(
        self,
        ws: WebSocket,
        loop: StepLoop[S],
        settings: StreamSettings,
        client_messages: tuple[type[WireMessage], ...],
        metrics: StreamMetrics,
    ) -> None:
        self.ws = ws
        self.loop = loop
        self.settings = settings
        self.parser = MessageParser(client_messages, settings.max_message_bytes)
        self.budget = MessageBudget(settings.max_messages_per_second)
        self.metrics = metrics
        self.close_code = 1000
        self._receiving = False

    @abc.abstractmethod
    async def handle(self, slot: S, msg: Message) -> None:
        """Act on one client frame; answer bad input with `reject`. May raise `RateLimitExceeded`
        (from `self.budget.spend()`), which ends the stream with 1008."""

    def encode(self, message: WireMessage) -> bytes | None:
        """The frame that carries `message`, or None to send nothing for it."""
        return message.pack()

    def waits_for_output(self) -> bool:
        """True while a silent client is only waiting for what it asked for (no idle timeout)."""
        return False

    def reject(self, slot: S, reason: str, message: str) -> None:
        """Count a bad client message and answer it with an `Error` (when the client reads them)."""
        self.metrics.protocol_errors.labels(reason).inc()
        if self.sends_messages:
            slot.outbox.put_nowait(Error(message=message))

    async def run(self) -> None:
        """Serve the stream; every task is done and the slot handed back when this returns."""
        await self.ws.accept()
        slot = self.loop.open()
        if slot is None:
            if self.sends_messages:
                await self.ws.send_bytes(Error(message=NO_FREE_CHANNELS).pack())
            await self.ws.close()
            return
        try:
            if self.sends_messages:
                await self.ws.send_bytes(Ready().pack())
            async with asyncio.TaskGroup() as group:
                sender = group.create_task(self._send_loop(slot), name=f"{self.loop.name}-send-{slot.index}")
                # Receiving is the group's body, not a task (see orchestrator/realtime/connection.py:
                # Python 3.11's TaskGroup misreports a task that fails after the body has ended, so
                # the send loop raises only while the body runs).
                self._receiving = True
                try:
                    await self._receive_loop(slot)
                finally:
                    self._receiving = False
                    self.loop.close(slot)  # its outbox gets None: the send loop sends what is left, closes
                await self._drain(sender)
        except* (StreamEnded, WebSocketDisconnect):
            pass
        finally:
            self.loop.close(slot)  # a no-op unless `Ready` could not be sent

    async def _drain(self, sender: asyncio.Task[None]) -> None:
        """Let the send loop finish what is queued and close, for at most `DRAIN_TIMEOUT_S` (plus
        the wait for the slot's release)."""
        await asyncio.wait({sender}, timeout=DRAIN_TIMEOUT_S + RELEASE_TIMEOUT_S)
        sender.cancel()  # a no-op once it is done; a cancelled task is no error to its group

    async def _receive_loop(self, slot: S) -> None:
        """Client frames until it leaves, falls silent, or breaks the message budget."""
        while True:
            try:
                msg = await asyncio.wait_for(self.ws.receive(), timeout=self.settings.idle_timeout_s)
            except TimeoutError:
                if self.waits_for_output():
                    continue
                self.reject(slot, "idle", f"no message for {self.settings.idle_timeout_s:.0f} s, closing")
                return
            if msg["type"] == "websocket.disconnect":
                return
            try:
                await self.handle(slot, msg)
            except RateLimitExceeded as exc:
                self.reject(slot, "rate", str(exc))
                self.close_code = POLICY_VIOLATION
                return

    async def _send_loop(self, slot: S) -> None:
        """The outbox to the socket until its `None`, then the close; ends the stream if it is first."""
        try:
            while (message := await slot.outbox.get()) is not None:
                frame = self.encode(message)
                if frame is not None:
                    await self.ws.send_bytes(frame)
            await self._released(slot)
            await self.ws.close(code=self.close_code)
        except CLIENT_GONE:
            pass  # the client has gone: its receive loop sees the disconnect
        except Exception:
            if self._receiving:
                raise  # a fault of ours: the group ends the stream and it surfaces from `run`
            # After the body has ended, a task's failure would leave the owner marked as
            # cancelled (Python 3.11's TaskGroup), so it is logged here instead.
            logger.exception("sending the rest of a stream failed", extra={"slot": slot.index})
            return
        if self._receiving:
            raise StreamEnded

    async def _released(self, slot: S) -> None:
        """Until the step loop has let go of the slot; past `RELEASE_TIMEOUT_S` the stream closes
        anyway, and says so in the log: a client must not wait on a stuck engine."""
        try:
            await asyncio.wait_for(slot.released.wait(), RELEASE_TIMEOUT_S)
        except TimeoutError:
            logger.warning(
                "closing a stream whose slot the engine still holds",
                extra={"slot": slot.index, "waited_s": RELEASE_TIMEOUT_S},
            )
