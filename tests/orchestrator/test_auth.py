"""The access token, end to end through TokenAuth on a tiny app: every way a client may
present it, a wrong one refused before the upgrade, and the subprotocol echoed back."""

from __future__ import annotations

import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocket

from orchestrator.auth import COOKIE, KEY_SUBPROTOCOL_PREFIX, TokenAuth, accepted_subprotocol

TOKEN = "right-token"
KEY = KEY_SUBPROTOCOL_PREFIX + TOKEN


async def _echo_protocol(ws: WebSocket) -> None:
    await ws.accept(subprotocol=accepted_subprotocol(ws.scope.get("subprotocols", [])))
    await ws.send_text("hello")
    await ws.close()


@pytest.fixture
def client() -> TestClient:
    app = Starlette(routes=[WebSocketRoute("/v1/realtime", _echo_protocol)])
    return TestClient(TokenAuth(app, SecretStr(TOKEN)))


@pytest.mark.parametrize(
    ("offered", "echoed"),
    [
        (["realtime", KEY], "realtime"),  # the browser openai client
        ([KEY, "realtime"], "realtime"),
        ([KEY], KEY),  # nothing else to answer with, and no answer fails a browser's handshake
        (["openai-beta.realtime-v1", KEY], "openai-beta.realtime-v1"),
    ],
)
def test_a_key_subprotocol_is_accepted_and_a_subprotocol_echoed(
    client: TestClient, offered: list[str], echoed: str
) -> None:
    with client.websocket_connect("/v1/realtime", subprotocols=offered) as ws:
        assert ws.accepted_subprotocol == echoed
        assert ws.receive_text() == "hello"


@pytest.mark.parametrize(
    "offered",
    [
        ["realtime", KEY_SUBPROTOCOL_PREFIX + "wrong-token"],
        ["realtime", KEY_SUBPROTOCOL_PREFIX],
        ["realtime", TOKEN],  # the bare token is no key subprotocol
        ["realtime"],
    ],
)
def test_a_wrong_or_missing_key_subprotocol_is_refused_before_the_upgrade(
    client: TestClient, offered: list[str]
) -> None:
    with (
        pytest.raises(WebSocketDenialResponse) as denied,
        client.websocket_connect("/v1/realtime", subprotocols=offered),
    ):
        pass
    assert denied.value.status_code == 401


@pytest.mark.parametrize(
    "credentials",
    [
        {"headers": {"Authorization": f"Bearer {TOKEN}"}},
        {"headers": {"Cookie": f"{COOKIE}={TOKEN}"}},
    ],
)
def test_header_and_cookie_still_work_without_subprotocols(
    client: TestClient, credentials: dict[str, dict[str, str]]
) -> None:
    with client.websocket_connect("/v1/realtime", **credentials) as ws:
        assert ws.accepted_subprotocol is None
        assert ws.receive_text() == "hello"


def test_the_subprotocol_header_is_no_credential_on_plain_http(client: TestClient) -> None:
    page = client.get("/", headers={"Sec-WebSocket-Protocol": f"realtime, {KEY}"})
    assert page.status_code == 401


@pytest.mark.parametrize(
    ("offered", "echoed"),
    [
        ([], None),
        (["realtime"], "realtime"),
        (["x-custom", "realtime"], "realtime"),
        (["x-custom", KEY, "y-custom"], "x-custom"),
        ([KEY, "x-custom"], "x-custom"),
        ([KEY, KEY_SUBPROTOCOL_PREFIX + "other"], KEY),
    ],
)
def test_accepted_subprotocol_never_echoes_a_key_when_another_was_offered(
    offered: list[str], echoed: str | None
) -> None:
    assert accepted_subprotocol(offered) == echoed
