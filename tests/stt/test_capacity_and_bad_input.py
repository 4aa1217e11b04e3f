"""Capacity limits and malformed input: clear errors, nothing hangs, other streams unharmed."""

from __future__ import annotations

import asyncio

import msgpack
import numpy as np
import pytest

from tests.conftest import moshi_stt_service
from tests.stt_client import FRAME, audio_msg, connect, marker_msg, speechlike, transcribe_stream

pytestmark = pytest.mark.moshi


@pytest.fixture(scope="module")
def two_slot_stt(tiny, api_key, tmp_path_factory):
    with moshi_stt_service(tiny, api_key, tmp_path_factory.mktemp("stt-2slots"), 2) as proc:
        yield proc


async def _recv(ws) -> dict:
    return msgpack.unpackb(await asyncio.wait_for(ws.recv(), 30.0))


async def test_beyond_capacity_gets_error_and_close_and_freed_slot_is_clean(two_slot_stt):
    url, key = two_slot_stt.ws, two_slot_stt.api_key
    audio = speechlike(1.5, seed=11)
    reference = await transcribe_stream(url, key, audio)

    async with connect(url, key) as first, connect(url, key) as second:
        assert (await _recv(first))["type"] == "Ready"
        assert (await _recv(second))["type"] == "Ready"
        # Leave state behind in both slots, then check the third is turned away.
        await first.send(audio_msg(speechlike(1.0, seed=1)))
        await second.send(audio_msg(speechlike(1.0, seed=2)))
        async with connect(url, key) as third:
            assert await _recv(third) == {"type": "Error", "message": "no free channels"}
            await asyncio.wait_for(third.wait_closed(), 5)
        await first.close()
        await asyncio.sleep(0.2)
        # The freed slot serves a new stream exactly as a fresh one: no state leaks.
        reused = await transcribe_stream(url, key, audio)
        await _recv(second)  # the remaining stream still flows
    assert reused.messages[0] == {"type": "Ready"}
    strip = lambda run: [{k: v for k, v in m.items() if k != "step_idx"} for m in run.messages]  # noqa: E731
    assert strip(reused) == strip(reference)


BAD_INPUTS = {
    "not msgpack": (b"\xc1\xc1 definitely not msgpack", "not a msgpack message"),
    "unknown type": (msgpack.packb({"type": "Dance", "steps": 3}), "unknown message type 'Dance'"),
    "no type": (msgpack.packb({"pcm": [0.0]}), "unknown message type None"),
    "not a map": (msgpack.packb([1, 2, 3]), "must be a msgpack map"),
    "pcm of strings": (
        msgpack.packb({"type": "Audio", "pcm": ["a", "b"]}),
        "pcm must be a flat list of numbers",
    ),
    "pcm not a list": (msgpack.packb({"type": "Audio", "pcm": "0.1"}), "pcm must be a list of numbers"),
    "nested pcm": (msgpack.packb({"type": "Audio", "pcm": [[0.1], [0.2]]}), "flat list of numbers"),
    "nan": (msgpack.packb({"type": "Audio", "pcm": [0.0, float("nan")]}), "NaN or infinite"),
    "inf": (msgpack.packb({"type": "Audio", "pcm": [float("inf")]}), "NaN or infinite"),
    "marker id": (msgpack.packb({"type": "Marker", "id": "seven"}), "invalid Marker message: id"),
}
# A message over MAX_MESSAGE_BYTES is refused by the transport with 1009, which ends the stream:
# tests/edges/test_connection_edges.py.


async def test_each_bad_message_gets_an_error_and_the_session_survives(moshi_stt):
    url, key = moshi_stt.ws, moshi_stt.api_key
    audio = speechlike(3.0, seed=4)
    reference = await transcribe_stream(url, key, audio)

    async def bad_client() -> list[str]:
        errors = []
        async with connect(url, key) as ws:
            assert (await _recv(ws))["type"] == "Ready"
            for name, (payload, _) in BAD_INPUTS.items():
                await ws.send(payload)
                errors.append((name, (await _recv(ws))))
            await ws.send("a text frame")
            errors.append(("text frame", await _recv(ws)))
            # The same session still transcribes afterwards.
            await ws.send(audio_msg(np.zeros(FRAME * 2, np.float32)))
            await ws.send(marker_msg(5))
            while (msg := await _recv(ws))["type"] != "Marker":
                assert msg["type"] in ("Step", "Word", "EndWord")
        return errors

    errors, parallel = await asyncio.gather(bad_client(), transcribe_stream(url, key, audio, pace_s=0.005))
    for (name, msg), expected in zip(
        errors, [*(e for _, e in BAD_INPUTS.values()), "text frames"], strict=True
    ):
        assert msg["type"] == "Error", name
        assert expected in msg["message"], (name, msg)
    # The well-behaved stream next to it got exactly what it gets alone.
    words = lambda run: [m for m in run.messages if m["type"] in ("Word", "EndWord", "Marker")]  # noqa: E731
    assert words(parallel) == words(reference)
