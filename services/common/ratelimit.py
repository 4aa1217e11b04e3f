"""Per-connection message-rate limit that slows a sender down instead of dropping data."""

from __future__ import annotations

import asyncio
import time


class MessagePacer:
    """Token bucket: `rate` messages per second with a burst of `burst`.

    `await pacer.take()` returns at once while the client stays within the rate; past it,
    it sleeps until a token is free. Reading from the socket pauses meanwhile, so TCP
    back-pressure slows the sender and no message is lost.
    """

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._tokens = self.burst
        self._last = time.monotonic()
        self.throttled = 0  # how many messages had to wait, for metrics and tests

    async def take(self) -> None:
        """Consume one token, waiting if the bucket is empty."""
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens < 1.0:
            self.throttled += 1
            await asyncio.sleep((1.0 - self._tokens) / self.rate)
            self._last = time.monotonic()
            self._tokens = 0.0
        else:
            self._tokens -= 1.0
