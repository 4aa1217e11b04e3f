"""`Audio` frames packed and parsed straight between numpy and msgpack: the same bytes and
samples as the general (per-float) path, which every other frame still takes."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from kit.protocol import (
    STT_CLIENT_MESSAGES,
    TTS_SERVER_MESSAGES,
    AudioIn,
    AudioOut,
    MessageParser,
    ProtocolError,
    pack_audio,
)

STT_IN = MessageParser(STT_CLIENT_MESSAGES, max_bytes=16 * 1024 * 1024)
TTS_OUT = MessageParser(TTS_SERVER_MESSAGES, max_bytes=16 * 1024 * 1024)


def general_pack(samples: np.ndarray) -> bytes:
    """What msgpack itself writes for the message, one float32 per sample (moshi-server's layout)."""
    return msgpack.packb({"type": "Audio", "pcm": samples.tolist()}, use_single_float=True)


@pytest.mark.parametrize("count", [0, 1, 15, 16, 1920, 65535, 65536])
def test_packing_gives_the_general_paths_bytes_at_every_array_header_size(count: int):
    samples = np.random.default_rng(count).uniform(-1, 1, count).astype(np.float32)
    assert pack_audio(samples) == general_pack(samples) == AudioIn(pcm=samples).pack()
    assert AudioOut(pcm=samples).pack() == general_pack(samples)


@pytest.mark.parametrize("count", [0, 15, 1920, 65536])
def test_the_fast_parse_gives_the_general_paths_samples(count: int):
    samples = np.random.default_rng(count).uniform(-1, 1, count).astype(np.float32)
    fast = STT_IN.parse(pack_audio(samples))
    slow = STT_IN.validate(msgpack.unpackb(general_pack(samples)))
    assert isinstance(fast, AudioIn) and fast.pcm.dtype == np.float32
    np.testing.assert_array_equal(fast.pcm, slow.pcm)
    np.testing.assert_array_equal(TTS_OUT.parse(pack_audio(samples)).pcm, samples)


def test_other_layouts_take_the_general_path_with_the_same_result():
    samples = [0.25, -0.5, 1.0]
    float64 = msgpack.packb({"type": "Audio", "pcm": samples})  # doubles, not floats
    reordered = msgpack.packb({"pcm": samples, "type": "Audio"}, use_single_float=True)
    for frame in (float64, reordered):
        np.testing.assert_array_equal(STT_IN.parse(frame).pcm, np.array(samples, np.float32))
    trailing = pack_audio(np.zeros(4, np.float32)) + b"\x00"
    with pytest.raises(ProtocolError):
        STT_IN.parse(trailing)
    nan = pack_audio(np.array([0.0, np.nan], np.float32))
    with pytest.raises(ProtocolError):
        STT_IN.parse(nan)
