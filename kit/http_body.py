"""HTTP request bodies read under a size limit, so an oversized upload is refused before it sits in memory.

FastAPI reads a declared body model's whole body before any check runs; routes that take an
upload or a JSON body from the public read it through here instead.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, TypeVar

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

M = TypeVar("M", bound=BaseModel)


async def read_body(
    request: Request, limit: int, what: str = "request body", *, idle_timeout_s: float
) -> bytes:
    """The whole body, or 413 as soon as its declared or received length passes `limit` bytes,
    or 408 (and the connection closed) when nothing of it arrives for `idle_timeout_s`."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"{what} too large: {declared} bytes (limit {limit})")
    body = bytearray()
    chunks = request.stream()
    try:
        while True:
            async with asyncio.timeout(idle_timeout_s):
                chunk = await anext(chunks, None)
            if chunk is None:
                return bytes(body)
            body.extend(chunk)
            if len(body) > limit:
                raise HTTPException(413, f"{what} too large (limit {limit} bytes)")
    except TimeoutError:
        stalled = f"{what} stalled: nothing of it arrived for {idle_timeout_s:g} s"
        raise HTTPException(408, stalled, headers={"Connection": "close"}) from None
    except ClientDisconnect:
        # Nobody reads this answer; it ends the request quietly instead of with a traceback.
        raise HTTPException(400, f"the client left before the whole {what} arrived") from None


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def read_json_body(request: Request, model: type[M], limit: int, *, idle_timeout_s: float) -> M:
    """A JSON body of at most `limit` bytes, validated as `model`.

    Answers as FastAPI does for a declared body model: 413 when too large, 415 for a content
    type other than JSON, 422 (RequestValidationError) for malformed JSON or a body that does not
    fit `model`, 400 for JSON that Python will not build (nesting too deep, an integer too long)
    and for text that cannot be encoded (a lone surrogate, which JSON's \\u escapes can write and
    no engine can speak); 408 as `read_body` does.
    """
    if not _is_json(request.headers.get("content-type")):
        raise HTTPException(415, "send the body as JSON (content-type: application/json)")
    data = await read_body(request, limit, idle_timeout_s=idle_timeout_s)
    try:
        value = json.loads(data)
    except json.JSONDecodeError as exc:
        error = {"type": "json_invalid", "loc": ("body", exc.pos), "msg": f"JSON decode error: {exc.msg}"}
        raise RequestValidationError([error]) from None
    except RecursionError:
        raise HTTPException(400, "There was an error parsing the body: JSON nested too deeply") from None
    except ValueError as exc:  # not UTF-8, or an integer past Python's digit limit
        raise HTTPException(400, f"There was an error parsing the body: {str(exc)[:200]}") from None
    unencodable = _lone_surrogate(value)
    if unencodable is not None:
        raise HTTPException(400, f"text cannot be encoded as UTF-8: {unencodable}")
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None


def _lone_surrogate(value: object) -> str | None:
    """Where the first lone surrogate in decoded JSON is, said in ASCII; None if it has none."""
    # A stack, not recursion: JSON may nest deeper than Python recurses.
    pending: list[tuple[object, str]] = [(value, "body")]
    while pending:
        item, where = pending.pop()
        if isinstance(item, str):
            if item.isascii():
                continue
            try:
                item.encode()
            except UnicodeEncodeError as exc:
                return f"{where} holds a lone surrogate ({item[exc.start]!a}) at character {exc.start}"
        elif isinstance(item, dict):
            for key, inner in reversed(item.items()):
                shown = key.encode(errors="backslashreplace").decode()
                pending += [(inner, f"{where}.{shown}"), (key, f"the key '{shown}' in {where}")]
        elif isinstance(item, list):
            pending += [(inner, f"{where}[{i}]") for i, inner in reversed(list(enumerate(item)))]
    return None


def json_body_openapi(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` that documents `model` as the JSON request body of a route reading it itself."""
    schema = model.model_json_schema()
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
