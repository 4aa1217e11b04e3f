"""Per-connection message-rate limit that never stops reading the socket.

A sender that is slowed down by not reading its socket also has its keepalive pings
left unread behind its data, and a client library then closes the connection with
"keepalive ping timeout" (websockets' default allows 20 s). So the limit never waits:
a connection gets a budget of messages (a token bucket), and one that spends it faster
than it refills is closed with a clear reason (WebSocket close 1008, policy violation).

What carries data that another limit already bounds does not spend the budget: audio is
paced by back-pressure on the model's buffer (STT) or by the real-time factor
(orchestrator), and TTS text by the per-stream character budget. What is left are the
messages whose cost is not bounded otherwise: control messages, invalid ones (each is
answered with an error), tiny audio chunks.
"""

from __future__ import annotations

import time

#: WebSocket close code of a connection that broke the rate limit (RFC 6455: policy violation).
POLICY_VIOLATION = 1008


class RateLimitExceeded(Exception):
    """The connection sent messages faster than its budget; the text is the reason to send."""


class MessageBudget:
    """Token bucket: `rate` messages per second, up to `burst` at once; `spend()` never waits."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._tokens = self.burst
        self._last = time.monotonic()

    def spend(self) -> None:
        """Take one message from the budget, or raise `RateLimitExceeded` when it is empty."""
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens < 1.0:
            raise RateLimitExceeded(
                f"more than {self.rate:.0f} messages per second (burst {self.burst:.0f}); "
                "the connection is closed"
            )
        self._tokens -= 1.0
