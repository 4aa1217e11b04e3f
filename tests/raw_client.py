"""A client on a bare socket, for what no well-behaved library sends: header bytes that are not
UTF-8, half a request, bytes that trickle in, WebSocket frames that are not UTF-8, pings
never answered. websockets' sans-I/O protocol writes and reads the well-formed parts."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri


@dataclass
class Answer:
    """What the server sent before it closed the connection (or before the wait ran out)."""

    data: bytes
    closed: bool

    @property
    def status(self) -> int | None:
        """The HTTP status of the first response, if one came."""
        if not self.data.startswith(b"HTTP/1.1 "):
            return None
        return int(self.data[9:12])

    @property
    def body(self) -> bytes:
        return self.data.partition(b"\r\n\r\n")[2]


class RawConnection:
    """One TCP connection to a service on loopback."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> RawConnection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def trickle(self, data: bytes, every_s: float) -> int:
        """Send `data` a byte at a time, `every_s` apart; how many bytes went out before the
        server closed the connection (what it said meanwhile is read and dropped)."""
        for sent in range(len(data)):
            try:
                await self.send(data[sent : sent + 1])
                if not await asyncio.wait_for(self.reader.read(65536), every_s):
                    return sent + 1
            except TimeoutError:
                continue
            except ConnectionError:
                return sent
        return len(data)

    async def answer(self, wait_s: float) -> Answer:
        """Everything the server sends until it closes the connection, or until `wait_s` passes."""
        data = bytearray()
        deadline = time.monotonic() + wait_s
        try:
            while (left := deadline - time.monotonic()) > 0:
                chunk = await asyncio.wait_for(self.reader.read(65536), left)
                if not chunk:
                    return Answer(bytes(data), closed=True)
                data += chunk
        except TimeoutError:
            pass
        except ConnectionError:
            return Answer(bytes(data), closed=True)
        return Answer(bytes(data), closed=False)

    def close(self) -> None:
        self.writer.transport.abort()


async def exchange(port: int, request: bytes, wait_s: float = 10.0) -> Answer:
    """Send `request` on a fresh connection; what the server answers until it closes."""
    conn = await RawConnection.open(port)
    try:
        await conn.send(request)
        return await conn.answer(wait_s)
    finally:
        conn.close()


def http_request(method: str, target: str, headers: dict[str, str | bytes], body: bytes = b"") -> bytes:
    """An HTTP/1.1 request whose header values go out byte for byte as given."""
    lines = [f"{method} {target} HTTP/1.1".encode(), b"Host: 127.0.0.1"]
    for name, value in headers.items():
        lines.append(name.encode() + b": " + (value if isinstance(value, bytes) else value.encode()))
    if body:
        lines.append(f"Content-Length: {len(body)}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def upgrade_request(path: str, headers: dict[str, str | bytes]) -> bytes:
    """A WebSocket upgrade request for `path` with `headers` as well."""
    upgrade: dict[str, str | bytes] = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    return http_request("GET", path, {**upgrade, **headers})


def client_frame(opcode: Opcode, payload: bytes, fin: bool = True) -> bytes:
    """A masked frame as a client sends it, whatever its payload holds."""
    return Frame(opcode, payload, fin=fin).serialize(mask=True, extensions=[])


@dataclass
class Closing:
    """How a WebSocket ended: the server's frames, its close frame, whether it closed the TCP
    connection within the wait, and whether it did so with a reset (its kernel's answer to
    data it never read) rather than an orderly FIN."""

    frames: list[Frame]
    close: Close | None
    tcp_closed: bool
    reset: bool = False


class RawWebSocket:
    """A WebSocket whose handshake and incoming frames websockets reads; what goes out after
    the handshake the test writes raw, and pings are never answered."""

    def __init__(self, conn: RawConnection, protocol: ClientProtocol) -> None:
        self.conn, self.protocol = conn, protocol
        self.pending: list[object] = []

    @classmethod
    async def open(cls, port: int, path: str, headers: dict[str, str]) -> RawWebSocket:
        protocol = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}{path}"), max_size=None)
        request = protocol.connect()
        request.headers.update(headers)
        protocol.send_request(request)
        conn = await RawConnection.open(port)
        await conn.send(b"".join(protocol.data_to_send()))
        self = cls(conn, protocol)
        handshake = await self._next_event(10.0)
        assert isinstance(handshake, Response), handshake
        if handshake.status_code != 101:
            raise AssertionError(f"upgrade refused: {handshake.status_code} {handshake.body!r}")
        return self

    async def _next_event(self, wait_s: float) -> object:
        while not self.pending:
            chunk = await asyncio.wait_for(self.conn.reader.read(65536), wait_s)
            if not chunk:
                raise EOFError("the server closed the connection")
            self.protocol.receive_data(chunk)
            self.pending += self.protocol.events_received()
        return self.pending.pop(0)

    async def send_raw(self, data: bytes, then_eof: bool = False) -> None:
        """Write `data` as it is, then (if `then_eof`) half-close: the client says no more."""
        await self.conn.send(data)
        if then_eof:
            self.conn.writer.write_eof()

    async def closing(self, wait_s: float) -> Closing:
        """Read the server's frames until it closes the TCP connection or `wait_s` passes."""
        frames: list[Frame] = []
        deadline = time.monotonic() + wait_s
        try:
            while (left := deadline - time.monotonic()) > 0:
                event = await self._next_event(left)
                if isinstance(event, Frame):
                    frames.append(event)
        except ConnectionResetError:
            return Closing(frames, self.protocol.close_rcvd, tcp_closed=True, reset=True)
        except (EOFError, ConnectionError):
            return Closing(frames, self.protocol.close_rcvd, tcp_closed=True)
        except TimeoutError:
            pass
        return Closing(frames, self.protocol.close_rcvd, tcp_closed=False)

    def close(self) -> None:
        self.conn.close()
