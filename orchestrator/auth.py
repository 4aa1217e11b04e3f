"""Access-token auth for the orchestrator, as pure ASGI middleware (HTTP and WebSocket).

With ``ACCESS_TOKEN`` set, every route but the probes needs it: as a Bearer header
(API clients, the OpenAI SDK), as the WebSocket subprotocol
``openai-insecure-api-key.<token>`` (the browser ``openai`` client, which cannot set
headers), or once as ``?token=`` on the UI URL the job prints, which sets an HttpOnly
cookie and redirects to the clean URL so the token leaves the address bar and the
browser history.

Behind a reverse proxy that strips a path prefix (Open OnDemand's ``/rnode/<host>/<port>/``)
the app never sees the prefix the browser uses, so the redirect is relative and the cookie
has no ``Path``: the browser then scopes it to the page's own directory (RFC 6265, 5.1.4),
which is the prefix, and never sends it to other apps behind the same portal.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from urllib.parse import parse_qs

from pydantic import SecretStr
from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

COOKIE = "unmute_token"
OPEN_PATHS = frozenset({"/health", "/ready", "/metrics"})
KEY_SUBPROTOCOL_PREFIX = "openai-insecure-api-key."

_DENIED_PAGE = """<!doctype html><meta charset="utf-8"><title>Access token required</title>
<body style="font-family:system-ui;max-width:40em;margin:4em auto;line-height:1.5">
<h1>Access token required</h1>
<p>{reason}. Open the URL printed by the job (it ends in <code>?token=...</code>), or ask
whoever started this assistant for it.</p></body>"""


def _matches(expected: SecretStr, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.get_secret_value().encode(), given.encode())


def accepted_subprotocol(offered: Sequence[str]) -> str | None:
    """The subprotocol to echo when accepting a WebSocket that offered `offered`.

    Browsers fail the handshake when they offered subprotocols and the server picks
    none, so an offer always gets an answer: ``realtime`` if offered, else the first
    one that carries no key; the key-bearing one only when nothing else was offered,
    so the secret is sent back only where refusing it would break the client.
    """
    if "realtime" in offered:
        return "realtime"
    keyless = [p for p in offered if not p.startswith(KEY_SUBPROTOCOL_PREFIX)]
    if keyless:
        return keyless[0]
    return offered[0] if offered else None


def relative_to_itself(path: str) -> str:
    """A relative reference to `path` from itself, without its query: its last segment, or
    ``./`` for a directory, so a redirect keeps whatever prefix a proxy stripped."""
    return "./" + path.rsplit("/", 1)[-1]  # "./": a segment with a colon is not a scheme


class TokenAuth:
    """Rejects requests without the token before any work (WebSockets: HTTP 401, no upgrade)."""

    def __init__(self, app: ASGIApp, token: SecretStr | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token is None or scope["type"] not in ("http", "websocket") or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        # As Starlette reads them: headers as latin-1 (any byte), cookies leniently (a cookie the
        # standard library calls illegal, such as "a<b=1", must not fail the request).
        headers = Headers(scope=scope)
        query = {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}
        bearer = headers.get("authorization", "")
        cookie = cookie_parser(headers.get("cookie", "")).get(COOKIE)
        # Only a WebSocket scope has "subprotocols": the header means nothing on plain HTTP.
        offered = scope.get("subprotocols", [])
        keys = [
            p.removeprefix(KEY_SUBPROTOCOL_PREFIX) for p in offered if p.startswith(KEY_SUBPROTOCOL_PREFIX)
        ]
        candidates = [
            bearer[7:] if bearer.lower().startswith("bearer ") else None,
            cookie,
            query.get("token"),
            *keys,
        ]
        if not any(_matches(self.token, c) for c in candidates):
            reason = (
                "The token in the link is wrong" if query.get("token") else "This page needs the access token"
            )
            await self._deny(scope, receive, send, reason)
            return
        if scope["type"] == "http" and query.get("token") and scope["method"] == "GET":
            # First visit with ?token=: remember it in a cookie and drop it from the URL.
            response = RedirectResponse(relative_to_itself(scope["path"]), status_code=303)
            response.set_cookie(COOKIE, query["token"], httponly=True, samesite="strict", path=None)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _deny(self, scope: Scope, receive: Receive, send: Send, reason: str) -> None:
        response: Response = HTMLResponse(_DENIED_PAGE.format(reason=reason), status_code=401)
        if scope["type"] == "websocket":
            await send({"type": "websocket.http.response.start", "status": 401, "headers": []})
            await send({"type": "websocket.http.response.body", "body": b"access token required"})
            return
        await response(scope, receive, send)
