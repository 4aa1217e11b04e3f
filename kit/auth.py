"""API-key auth for the model services, as moshi-server does it.

The key travels in the ``kyutai-api-key`` header; only when that header is absent is
the ``auth_id`` query parameter consulted. A missing or wrong key is refused with
HTTP 401 before the WebSocket is accepted, so no slot or model work is spent on it.
"""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request, WebSocket
from pydantic import SecretStr
from starlette.responses import Response

API_KEY_HEADER = "kyutai-api-key"
API_KEY_QUERY = "auth_id"


def key_matches(expected: SecretStr, given: str | None) -> bool:
    """Constant-time comparison, so response timing does not leak the key."""
    if given is None:
        return False
    return hmac.compare_digest(expected.get_secret_value().encode(), given.encode())


def presented_key(conn: Request | WebSocket, allow_query: bool) -> str | None:
    """The key a client presented: the header, else (WebSocket only) the query parameter."""
    header = conn.headers.get(API_KEY_HEADER)
    if header is not None or not allow_query:
        return header
    return conn.query_params.get(API_KEY_QUERY)


async def authorize_websocket(ws: WebSocket, expected: SecretStr) -> bool:
    """Check the key before `accept()`; on failure answer 401 and return False."""
    if key_matches(expected, presented_key(ws, allow_query=True)):
        return True
    await ws.send_denial_response(Response(status_code=401))
    return False


def require_http_key(request: Request, expected: SecretStr) -> None:
    """Raise 401 unless the request carries the right ``kyutai-api-key`` header."""
    if not key_matches(expected, presented_key(request, allow_query=False)):
        raise HTTPException(status_code=401, detail=f"missing or wrong {API_KEY_HEADER} header")
