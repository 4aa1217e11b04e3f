"""The connection edge every service shares: uvicorn, configured, and tightened where it lets
anyone who can reach the port, before any auth, hold or trouble the service:

- A connection that sends nothing, or half a request head (slowloris), was never timed out:
  uvicorn's keep-alive timer runs only after a response, and stops at the first byte of the
  next request. `DeadlineH11Protocol` gives every request head (a plain request or a
  WebSocket upgrade) a deadline.
- Header values may hold any byte (HTTP's obs-text); code that decodes them as UTF-8 failed
  with a 500 and a traceback. `Utf8Headers` refuses them with 400 before the app runs.
- A text frame that is not UTF-8 is closed with 1007, as it should be, but uvicorn logs an
  ERROR with a traceback (and a second one when the client's close came with it).
  `EdgeWebSocketProtocol` logs one line.
- uvicorn buffers frames up to 16 MiB by default; `server_config` sets the frame limit to the
  endpoint's message limit, so a bigger message is refused (1009) as its header arrives, and
  `EdgeWebSocketProtocol` makes sure the client gets that close frame.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import h11
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.utils import get_client_addr
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import CloseCode
from websockets.protocol import State

from kit.settings import ServiceSettings

logger = logging.getLogger(__name__)

_HEAD_TIMEOUT_BODY = b"request head not received in time\n"
_REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
    b"content-length: " + str(len(_HEAD_TIMEOUT_BODY)).encode() + b"\r\n\r\n" + _HEAD_TIMEOUT_BODY
)


class ServerConfig(uvicorn.Config):
    """uvicorn's config, plus the request-head deadline, with every app behind `Utf8Headers`."""

    def __init__(self, app: Any, *, head_timeout_s: float, **options: Any) -> None:
        super().__init__(app, http=DeadlineH11Protocol, ws=EdgeWebSocketProtocol, **options)
        self.head_timeout_s = head_timeout_s

    def load(self) -> None:
        super().load()
        # Outermost, so that nothing (uvicorn's proxy-header middleware included) sees such headers.
        self.loaded_app = Utf8Headers(self.loaded_app)


def server_config(
    app: Any, settings: ServiceSettings, *, tls: tuple[Path, Path] | None = None, **options: Any
) -> ServerConfig:
    """The uvicorn config of a service: its address, its connection timeouts and WebSocket
    limits from `settings`, HTTPS/WSS when `tls` (certificate, key) is given; `options` go to
    uvicorn as they are (`workers`, `factory`)."""
    cert, key = tls or (None, None)
    return ServerConfig(
        app,
        head_timeout_s=settings.http_header_timeout_s,
        host=settings.host,
        port=settings.port,
        ssl_certfile=cert,
        ssl_keyfile=key,
        log_config=None,
        timeout_keep_alive=settings.http_keepalive_timeout_s,  # type: ignore[arg-type]  # a float works
        ws_max_size=settings.websocket_message_limit(),
        ws_ping_interval=settings.ws_ping_interval_s,
        ws_ping_timeout=settings.ws_ping_timeout_s,
        ws_per_message_deflate=False,
        **options,
    )


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, with a deadline on each request head.

    The deadline starts when the connection is made and again when a response is complete,
    and ends when a whole request head has arrived; bytes that trickle in do not extend it.
    A connection past it is closed: silently if it had sent nothing of a request (as an idle
    keep-alive connection is), else after a 408.
    """

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        assert isinstance(config, ServerConfig), "serve through server_config()"
        self.head_timeout_s = config.head_timeout_s
        self.head_deadline: asyncio.TimerHandle | None = None
        # The request scope when the deadline was set: a new one means a new head arrived.
        self.scope_before_head: object = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._start_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_deadline()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        # Before uvicorn's own handler, which may go straight on to a pipelined request.
        if not self.transport.is_closing():
            self._start_head_deadline()
        super().on_response_complete()

    def handle_events(self) -> None:
        super().handle_events()
        # uvicorn builds a new scope for each request head, plain or an upgrade.
        if self.head_deadline is not None and self.scope is not self.scope_before_head:
            self._stop_head_deadline()

    def _start_head_deadline(self) -> None:
        self._stop_head_deadline()
        self.scope_before_head = self.scope
        self.head_deadline = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _stop_head_deadline(self) -> None:
        if self.head_deadline is not None:
            self.head_deadline.cancel()
            self.head_deadline = None

    def _head_timed_out(self) -> None:
        self.head_deadline = None
        if self.transport.is_closing():
            return
        begun = bool(self.conn.trailing_data[0])
        if begun and self.conn.our_state is h11.IDLE:
            self.transport.write(_REQUEST_TIMEOUT)
        logger.debug("closing a connection: no whole request head within %.1f s", self.head_timeout_s)
        self.transport.close()


class EdgeWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, failing a connection (1009, 1007) so the client hears why.

    A text message that is not UTF-8 is closed with 1007 and one log line, where uvicorn logs
    a traceback (and a second one when the client's close came with it). And a failed
    connection is half-closed: uvicorn closes the socket at once, with the rest of an
    oversized message unread, so the kernel answers that data with a reset, which can
    destroy the close frame before the client reads it (a bare 1006 instead of 1009).
    Here the close frame and a FIN go out, and what the client still sends is read and
    dropped until it closes too, for at most uvicorn's close timeout (10 s).
    """

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text" and not self.close_sent and not _is_utf8(self.frames):
            self.frames = []
            # Else the client's close came with it, and is being answered already.
            closing = self.conn.state is State.OPEN
            logger.warning(
                '%s - "WebSocket %s" sent a text message that is not valid UTF-8%s',
                get_client_addr(self.scope),
                self.scope["path"],
                "; closing with 1007" if closing else "",
            )
            if closing:
                self.conn.send_close(CloseCode.INVALID_DATA, "text message is not valid UTF-8")
                self.handle_parser_exception()
            return
        super().send_receive_event_to_app()

    def handle_parser_exception(self) -> None:
        if self.close_sent:
            return  # more of the client's data after the failure: websockets drops it
        close = self.conn.close_sent
        assert close is not None  # websockets has failed the connection, or we closed it above
        self.queue.put_nowait({"type": "websocket.disconnect", "code": close.code, "reason": close.reason})
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        # The app's sends now fail as they do for a client that left (not with uvicorn's
        # "Unexpected ASGI message" RuntimeError).
        self.disconnected = True
        if not self.transport.can_write_eof():  # TLS: asyncio cannot half-close it
            self.transport.close()
            return
        self.transport.write_eof()
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(self.close_timeout, self.transport.close)


def _is_utf8(frames: list[bytes]) -> bool:
    data = frames[0] if len(frames) == 1 else b"".join(frames)
    if data.isascii():  # JSON events, base64 audio included, nearly always are: no decoding needed
        return True
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


class Utf8Headers:
    """Answers 400 to a request or WebSocket upgrade with a header value that is not UTF-8.

    HTTP lets header values hold any byte, but no client of ours means anything by such
    bytes, and code that decodes a header as UTF-8 would fail on them with a 500.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            bad = _undecodable_header(scope["headers"])
            if bad is not None:
                await _refuse(scope, send, f"request header {bad!r} is not valid UTF-8\n")
                return
        await self.app(scope, receive, send)


def _undecodable_header(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The name of the first header whose value is not UTF-8 (names are ASCII tokens: h11 checks)."""
    for name, value in headers:
        if value.isascii():
            continue
        try:
            value.decode()
        except UnicodeDecodeError:
            return name.decode("latin-1")
    return None


async def _refuse(scope: Scope, send: Send, reason: str) -> None:
    """400 with `reason`, before the app runs (for a WebSocket, instead of the upgrade)."""
    body = reason.encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    prefix = "websocket.http" if scope["type"] == "websocket" else "http"
    await send({"type": f"{prefix}.response.start", "status": 400, "headers": headers})
    await send({"type": f"{prefix}.response.body", "body": body})
