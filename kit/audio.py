"""The one place that defines the audio format every part of the project speaks.

Kyutai's Mimi codec runs at 24 kHz and 12.5 frames per second, so one model step
consumes one 1920-sample (80 ms) frame of mono float32 audio. Everything else here
is derived from those two numbers.
"""

from __future__ import annotations

import io
from collections import deque

import numpy as np
import numpy.typing as npt
import soundfile
import soxr

SAMPLE_RATE = 24_000
FRAME_RATE = 12.5
FRAME_SIZE = int(SAMPLE_RATE / FRAME_RATE)  # 1920 samples
FRAME_SECONDS = FRAME_SIZE / SAMPLE_RATE  # 0.08 s

Pcm = npt.NDArray[np.float32]

# Sample rates an uploaded file may have: below 4 kHz is not speech, and a rate like 1 Hz
# would make a few bytes of file resample to hours of audio.
MIN_FILE_RATE = 4_000
MAX_FILE_RATE = 384_000
_BLOCK_SAMPLES = 1 << 18  # samples (all channels) decoded at a time: 1 MiB of float32


class AudioFormatError(ValueError):
    """Audio that cannot be used: not a number array, not finite, or an unreadable file."""


class AudioTooLongError(AudioFormatError):
    """An audio file longer than the caller accepts."""


def frames_for(seconds: float) -> int:
    """Number of whole frames needed to cover `seconds` of audio (rounded up)."""
    return int(np.ceil(round(seconds * FRAME_RATE, 6)))


def to_pcm(values: object) -> Pcm:
    """Validate a decoded wire value as a 1-D array of finite samples and return it as float32.

    Accepts a list of ints/floats (msgpack float32 or float64). Strings, booleans, nested
    lists, NaN and infinities are refused with a message that says which rule failed.
    """
    if not isinstance(values, list | tuple | np.ndarray):
        raise AudioFormatError(f"pcm must be a list of numbers, got {type(values).__name__}")
    arr = np.asarray(values)
    if arr.size == 0:
        return np.zeros(0, dtype=np.float32)
    if arr.ndim != 1 or arr.dtype.kind not in "fiu":
        raise AudioFormatError("pcm must be a flat list of numbers")
    out = arr.astype(np.float32)
    if not np.isfinite(out).all():
        raise AudioFormatError("pcm contains NaN or infinite samples")
    return out


def resample(pcm: npt.NDArray[np.floating], from_rate: int, to_rate: int) -> Pcm:
    """Resample a whole mono signal (soxr, high quality). Returns float32."""
    pcm = np.ascontiguousarray(pcm, dtype=np.float32)
    if from_rate == to_rate:
        return pcm
    return np.asarray(soxr.resample(pcm, from_rate, to_rate), dtype=np.float32)


def decode_audio_file(data: bytes, max_seconds: float) -> Pcm:
    """Decode a WAV/FLAC/OGG file of any common sample rate to mono float32 at 24 kHz.

    The header's sample rate and length are checked before any sample is decoded, and the
    samples are then read, mixed down and resampled a block at a time: a header that lies
    about its length or rate costs no more memory or work than `max_seconds` of real audio.
    """
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as file:
            rate = file.samplerate
            if not MIN_FILE_RATE <= rate <= MAX_FILE_RATE:
                raise AudioFormatError(
                    f"sample rate {rate} Hz is not supported ({MIN_FILE_RATE} to {MAX_FILE_RATE} Hz)"
                )
            max_frames = int(max_seconds * rate)
            if file.frames > max_frames:
                raise AudioTooLongError(f"audio is {file.frames / rate:.1f} s long (limit {max_seconds:g} s)")
            return _read_mono(file, max_frames, max_seconds)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioFormatError(f"not a readable audio file: {exc}") from None


def _read_mono(file: soundfile.SoundFile, max_frames: int, max_seconds: float) -> Pcm:
    rate = file.samplerate
    stream = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32") if rate != SAMPLE_RATE else None
    block_frames = max(1, _BLOCK_SAMPLES // file.channels)
    out: list[Pcm] = []
    frames = 0
    while True:
        block = file.read(block_frames, dtype="float32", always_2d=True)
        frames += len(block)
        if frames > max_frames:  # the header understated the length
            raise AudioTooLongError(f"audio is longer than the limit of {max_seconds:g} s")
        mono = block.mean(axis=1, dtype=np.float32)
        if not np.isfinite(mono).all():
            raise AudioFormatError("audio file contains NaN or infinite samples")
        last = len(block) < block_frames
        out.append(stream.resample_chunk(mono, last=last) if stream is not None else mono)
        if last:
            return np.concatenate(out).astype(np.float32, copy=False)


class FrameBuffer:
    """Collects chunks of any size and hands them out as whole 1920-sample frames.

    Model code only ever sees full frames (Mimi refuses anything else, and CUDA graphs
    want fixed shapes), while clients send whatever chunk size suits them. Chunks are
    kept as they came and read through an offset, so a 30 s chunk is not copied again
    for every frame taken out of it.
    """

    def __init__(self, frame_size: int = FRAME_SIZE) -> None:
        self.frame_size = frame_size
        self._chunks: deque[Pcm] = deque()
        self._offset = 0  # samples of _chunks[0] already handed out
        self._size = 0

    def __len__(self) -> int:
        """Samples currently buffered."""
        return self._size

    @property
    def full_frames(self) -> int:
        """How many whole frames can be popped now."""
        return self._size // self.frame_size

    def push(self, pcm: Pcm) -> None:
        """Append samples (float32, 1-D)."""
        if pcm.size:
            self._chunks.append(pcm)
            self._size += pcm.size

    def pad_to_frame(self) -> int:
        """Complete a partial last frame with zeros; returns the number of zeros added."""
        missing = (-self._size) % self.frame_size
        if missing:
            self.push(np.zeros(missing, dtype=np.float32))
        return missing

    def pop_frame(self) -> Pcm | None:
        """Remove and return the oldest full frame, or None if less than a frame is buffered."""
        if self._size < self.frame_size:
            return None
        frame = np.empty(self.frame_size, dtype=np.float32)
        filled = 0
        while filled < self.frame_size:
            head = self._chunks[0]
            take = min(self.frame_size - filled, head.size - self._offset)
            frame[filled : filled + take] = head[self._offset : self._offset + take]
            filled += take
            self._offset += take
            if self._offset == head.size:
                self._chunks.popleft()
                self._offset = 0
        self._size -= self.frame_size
        return frame

    def clear(self) -> None:
        """Drop everything buffered."""
        self._chunks.clear()
        self._offset = 0
        self._size = 0
