"""`POST /v1/transcribe` on the whisper engine: a file's rate and length are checked from its header
before any sample is decoded, and a header that lies gets a client error, never a 500."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile

pytestmark = pytest.mark.lite


def wav(rate: int, frames: int, channels: int = 1) -> bytes:
    """A 16-bit PCM WAV whose header says `rate` and `channels`, with `frames` frames of silence."""
    data = bytes(frames * channels * 2)
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * 2, channels * 2, 16)
    chunks = b"WAVEfmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(chunks)) + chunks


def flac_claiming_2_to_the_36_samples() -> bytes:
    """Half a second of FLAC whose STREAMINFO claims 2**36 - 1 samples (about 100 days)."""
    buf = io.BytesIO()
    soundfile.write(buf, np.zeros(4000, np.float32), 8000, format="FLAC")
    flac = bytearray(buf.getvalue())
    # STREAMINFO follows "fLaC" and its 4-byte block header; the 36-bit sample count is the
    # low nibble of its byte 13 and all of bytes 14-17.
    flac[8 + 13] |= 0x0F
    flac[8 + 14 : 8 + 18] = b"\xff\xff\xff\xff"
    return bytes(flac)


async def post(service, content: bytes) -> httpx.Response:
    async with httpx.AsyncClient(base_url=service.http, timeout=120) as client:
        headers = {"kyutai-api-key": service.api_key}
        return await client.post("/v1/transcribe", content=content, headers=headers)


def peak_rss_since_reset(pid: int) -> int:
    """Peak resident memory in bytes since the last `reset_peak_rss`."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def reset_peak_rss(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@pytest.mark.parametrize(("rate", "frames"), [(1, 100), (8, 100), (3999, 4000), (400_000, 40_000)])
async def test_absurd_sample_rates_are_refused(whisper_stt, rate, frames):
    """A few bytes at 1 or 8 Hz used to be resampled to 24 kHz (24000x the samples) first."""
    response = await post(whisper_stt, wav(rate, frames))
    assert response.status_code == 415, response.text
    assert f"sample rate {rate} Hz is not supported (4000 to 384000 Hz)" in response.json()["detail"]


async def test_a_file_over_the_length_limit_is_refused_from_its_header(whisper_stt):
    """3000 s at 4 kHz (24 MB) used to be decoded, mixed down and resampled to 24 kHz (about
    12 times its size in float32 arrays) before its length was checked."""
    pid = whisper_stt.process.pid
    body = wav(4000, 4000 * 3000)
    reset_peak_rss(pid)
    baseline = peak_rss_since_reset(pid)
    response = await post(whisper_stt, body)
    grown = peak_rss_since_reset(pid) - baseline
    size = len(body)
    assert response.status_code == 413, response.text
    # Reading the body holds it a few times over (buffers, bytearray, bytes); decoding it
    # would take about 16 times its size.
    assert grown < 8 * size, f"peak RSS grew by {grown / 2**20:.0f} MiB for a {size / 2**20:.0f} MiB body"
    assert response.json()["detail"] == "audio is 3000.0 s long (limit 600 s)"


async def test_a_header_claiming_an_absurd_length_is_refused_not_a_500(whisper_stt):
    """Decoding allocated the claimed 2**36 samples (256 GiB) first: MemoryError, a 500."""
    response = await post(whisper_stt, flac_claiming_2_to_the_36_samples())
    assert response.status_code == 413, response.text
    assert response.json()["detail"] == "audio is 8589934.6 s long (limit 600 s)"


async def test_lying_wav_headers_get_a_client_error(whisper_stt):
    zero_channels = wav(16000, 100, channels=1).replace(struct.pack("<HH", 1, 1), struct.pack("<HH", 1, 0), 1)
    response = await post(whisper_stt, zero_channels)
    assert response.status_code == 415 and "not a readable audio file" in response.json()["detail"]

    # A data chunk claiming more than the file holds (as a stream writer that never went back
    # to fix its header leaves it) is read for what is there.
    truncated = wav(16000, 8000)[:-8000]
    response = await post(whisper_stt, truncated)
    assert response.status_code == 200, response.text
    assert response.json()["duration_s"] == pytest.approx(0.25, abs=0.01)

    # The service is still whole: a good file is transcribed.
    response = await post(whisper_stt, wav(16000, 16000))
    assert response.status_code == 200 and response.json()["duration_s"] == pytest.approx(1.0, abs=0.01)
