"""`POST /synthesize` on the espeak engine reads its JSON body under a size limit that follows from
TTS_MAX_TEXT_CHARS: an oversized body is refused before it is all read, and a bad one gets a clear
error that does not echo it back."""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import pytest

pytestmark = pytest.mark.lite

MAX_TEXT_CHARS = 4000  # the service's default TTS_MAX_TEXT_CHARS


async def raw_post(service, head: str, body: bytes) -> tuple[int, str]:
    """Send `head` (request line and headers) and `body`, then read the answer without sending more.

    Raw, because an HTTP client finishes sending its body before it reads the answer: a server
    that waits for the rest of a body would never answer it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
    try:
        writer.write(head.encode() + body)
        await writer.drain()
        # A server that waits for the whole body never answers: the bound turns that into a failure.
        status_line = await asyncio.wait_for(reader.readline(), 20)
        rest = await asyncio.wait_for(reader.read(), 20)
    finally:
        writer.close()
    status = int(status_line.split()[1])
    return status, rest.decode(errors="replace").split("\r\n\r\n", 1)[-1]


def head(service, extra: str) -> str:
    return (
        f"POST /synthesize HTTP/1.1\r\nHost: 127.0.0.1\r\nkyutai-api-key: {service.api_key}\r\n"
        f"Content-Type: application/json\r\nConnection: close\r\n{extra}\r\n"
    )


async def body_limit(service) -> int:
    """The limit the service states when a body declares a length past it."""
    status, text = await raw_post(service, head(service, "Content-Length: 1000000000\r\n"), b'{"text": "')
    assert status == 413, text
    return int(re.search(r"limit (\d+)", text)[1])


async def post(service, content: bytes, content_type: str = "application/json") -> httpx.Response:
    headers = {"kyutai-api-key": service.api_key, "content-type": content_type}
    async with httpx.AsyncClient(base_url=service.http, timeout=60) as client:
        return await client.post("/synthesize", content=content, headers=headers)


async def test_declared_oversize_body_is_refused_before_it_is_read(espeak_tts):
    declared = head(espeak_tts, "Content-Length: 1000000000\r\n")
    status, text = await raw_post(espeak_tts, declared, b'{"text": "')
    assert status == 413
    limit = int(re.search(r"request body too large: 1000000000 bytes \(limit (\d+)\)", text)[1])
    # Room for the longest allowed text even with every character JSON-escaped.
    assert 12 * MAX_TEXT_CHARS <= limit <= 100_000


async def test_streamed_oversize_body_is_refused_while_it_is_read(espeak_tts):
    """Chunked, with no length declared: counted as it comes, refused once past the limit."""
    limit = await body_limit(espeak_tts)
    parts = [b'{"text": "'] + [b"a" * 4096] * (limit // 4096 + 2)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts)
    status, text = await raw_post(espeak_tts, head(espeak_tts, "Transfer-Encoding: chunked\r\n"), chunks)
    assert status == 413
    assert f"request body too large (limit {limit} bytes)" in text

    # The service goes on.
    response = await post(espeak_tts, json.dumps({"text": "Still here."}).encode())
    assert response.status_code == 200 and len(response.content) > 0


async def test_the_longest_allowed_text_fits_the_body_limit(espeak_tts):
    """Every character escaped as a surrogate pair (12 bytes): the body is read whole, and the
    text's own limit answers with its own message."""
    body = json.dumps({"text": "\U0001d41a" * (MAX_TEXT_CHARS + 1), "voice": "v" * 256}).encode()
    assert len(body) > 12 * MAX_TEXT_CHARS
    response = await post(espeak_tts, body)
    assert response.status_code == 413
    assert f"text is {MAX_TEXT_CHARS + 1} characters; the limit is {MAX_TEXT_CHARS}" in response.text


@pytest.mark.parametrize(
    ("content", "content_type", "status", "reason"),
    [
        (b'{"text": "hi"', "application/json", 422, "JSON decode error"),
        (b"\xff\xfe\xfd", "application/json", 400, "error parsing the body"),
        (b"[" * 50_000, "application/json", 400, "error parsing the body: JSON nested too deeply"),
        (b'{"text": "hi", "cfg_alpha": %s}' % (b"9" * 5000), "application/json", 400, "4300 digits"),
        (json.dumps({"text": ["x" * 50_000]}).encode(), "application/json", 422, "valid string"),
        (json.dumps([{"text": "x" * 50_000}]).encode(), "application/json", 422, "valid dictionary"),
        (b'{"text": "hi"}', "text/plain", 415, "send the body as JSON"),
    ],
)
async def test_bad_bodies_get_a_clear_error_without_echo(espeak_tts, content, content_type, status, reason):
    response = await post(espeak_tts, content, content_type)
    assert response.status_code == status, response.text
    assert reason in response.text
    assert "xxxxxxxxxx" not in response.text and len(response.content) < 1000
