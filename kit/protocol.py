"""msgpack wire messages of Kyutai's moshi-server, as pydantic models.

One binary WebSocket frame carries one msgpack map whose first key is ``type``.
moshi-server encodes ``Vec<f32>`` fields (``pcm``, ``prs``) as float32 and ``f64``
fields (times) as float64; `WireMessage.pack` reproduces that, so Kyutai's own
clients and unmute's strict pydantic clients read our messages unchanged.

`Audio` frames are most of the traffic (one every 80-100 ms per stream, each way), so
they are packed and read straight between numpy and msgpack bytes (`pack_audio`, and a
fast path in `MessageParser.parse`): a Python float per sample cost ~0.2-0.4 ms a frame.

`Capacity` is the one thing the services tell the orchestrator outside a stream: their
slots, in the /ready answer.

The messages, and what Kyutai's and unmute's clients rely on: docs/architecture.md, 3.1 and 3.2.
"""

from __future__ import annotations

import math
import reprlib
import struct
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, Self, Union

import msgpack
import numpy as np
import numpy.typing as npt
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PositiveInt,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic.functional_validators import PlainValidator

from kit.audio import AudioFormatError, Pcm, to_pcm


class ProtocolError(ValueError):
    """An inbound frame that is not a valid message. Its text is sent back as `Error`."""


def _validate_pcm(value: Any) -> Pcm:
    try:
        # Numbers beyond float32 become inf, which to_pcm refuses; numpy need not warn first.
        with np.errstate(over="ignore", invalid="ignore"):
            return to_pcm(value)
    except AudioFormatError as exc:
        raise ValueError(str(exc)) from None


PcmField = Annotated[
    np.ndarray,
    PlainValidator(_validate_pcm),
    PlainSerializer(lambda a: a.tolist(), return_type=list),
]


class WireMessage(BaseModel):
    """Base of every msgpack message; `pack()` gives the bytes of one WebSocket frame."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="ignore", frozen=True)
    # moshi-server sends Vec<f32> payloads as msgpack float32; messages whose only
    # floats are such payloads set this so the bytes match the Rust server's.
    single_float: ClassVar[bool] = False

    def pack(self) -> bytes:
        """Serialise with ``type`` as the first key, as rmp_serde does."""
        data = self.model_dump(mode="python")
        return msgpack.packb(data, use_single_float=self.single_float, use_bin_type=True)


# ---- Audio frames, both ways ---------------------------------------------------------

# `{"type": "Audio", "pcm": [...]}` up to the array's length, as msgpack and rmp_serde write it.
_AUDIO_HEAD = b"\x82" + msgpack.packb("type") + msgpack.packb("Audio") + msgpack.packb("pcm")
# One float32 array element: the msgpack float32 marker, then the big-endian value.
_FLOAT32_MARKER = 0xCA
_FLOAT32_ELEMENT = np.dtype([("marker", "u1"), ("value", ">f4")])


def pack_audio(pcm: Pcm) -> bytes:
    """An `Audio` message's bytes, the same as ``AudioIn(pcm=pcm).pack()``, without a model.

    For samples this process made itself (float32, finite): the receiver validates them.
    """
    samples = np.asarray(pcm, dtype=np.float32).ravel()
    elements = np.empty(samples.size, dtype=_FLOAT32_ELEMENT)
    elements["marker"] = _FLOAT32_MARKER
    elements["value"] = samples
    return _AUDIO_HEAD + msgpack.Packer().pack_array_header(samples.size) + elements.tobytes()


def _array_header(data: bytes, at: int) -> tuple[int, int] | None:
    """(length, header size) of the msgpack array header at `at`, or None if there is none."""
    if at >= len(data):
        return None
    marker = data[at]
    if 0x90 <= marker <= 0x9F:
        return marker & 0x0F, 1
    if marker == 0xDC and at + 3 <= len(data):
        return struct.unpack_from(">H", data, at + 1)[0], 3
    if marker == 0xDD and at + 5 <= len(data):
        return struct.unpack_from(">I", data, at + 1)[0], 5
    return None


def _unpack_audio(data: bytes) -> dict[str, object] | None:
    """The decoded message when `data` is an `Audio` frame in exactly `pack_audio`'s layout
    (what moshi-server and its clients send), with the samples as an array; None for
    any other frame, which then takes the general path. Both give the same samples."""
    if not data.startswith(_AUDIO_HEAD):
        return None
    header = _array_header(data, len(_AUDIO_HEAD))
    if header is None:
        return None
    count, size = header
    start = len(_AUDIO_HEAD) + size
    if len(data) != start + count * _FLOAT32_ELEMENT.itemsize:
        return None
    elements = np.frombuffer(data, dtype=_FLOAT32_ELEMENT, offset=start)
    if not (elements["marker"] == _FLOAT32_MARKER).all():
        return None  # float64 or integer samples
    return {"type": "Audio", "pcm": elements["value"]}  # a view: validation makes it native float32


class _AudioMessage(WireMessage):
    """An `Audio` frame; packed without a Python float per sample."""

    type: Literal["Audio"] = "Audio"
    pcm: PcmField

    def pack(self) -> bytes:
        """The bytes the general `WireMessage.pack` gives (float32 samples), made from the array."""
        return pack_audio(self.pcm)


# ---- STT: client -> server ------------------------------------------------------------


class AudioIn(_AudioMessage):
    """24 kHz mono float samples in [-1, 1], any length."""


class MarkerIn(WireMessage):
    """Flush token: echoed once everything sent before it has been transcribed."""

    type: Literal["Marker"] = "Marker"
    id: int


# ---- STT: server -> client ------------------------------------------------------------


class Ready(WireMessage):
    """First message of every stream: a slot is held for this client."""

    type: Literal["Ready"] = "Ready"


class Word(WireMessage):
    """A decoded word; `start_time` in seconds on the stream's timeline."""

    type: Literal["Word"] = "Word"
    text: str
    start_time: float


class EndWord(WireMessage):
    """End of the latest word."""

    type: Literal["EndWord"] = "EndWord"
    stop_time: float


class Step(WireMessage):
    """One per processed 80 ms frame: pause probabilities over 0.5/1/2/3 s horizons."""

    type: Literal["Step"] = "Step"
    step_idx: int
    prs: list[float]
    buffered_pcm: int
    single_float: ClassVar[bool] = True


class MarkerOut(WireMessage):
    """Echo of a client `Marker`."""

    type: Literal["Marker"] = "Marker"
    id: int


class Error(WireMessage):
    """Something the client did (or capacity) went wrong; the text says what."""

    type: Literal["Error"] = "Error"
    message: str


# ---- TTS: client -> server ------------------------------------------------------------


class TextIn(WireMessage):
    """Text to speak; split into words on whitespace."""

    type: Literal["Text"] = "Text"
    text: str = Field(max_length=4096)


class Eos(WireMessage):
    """No more text will come."""

    type: Literal["Eos"] = "Eos"


MAX_VOICE_VALUES = 512 * 2000  # a 512-d embedding of 2000 frames (160 s of reference audio)
_FLOAT32_MAX = float(np.finfo(np.float32).max)
EmbeddingValue = Annotated[float, Field(allow_inf_nan=False, ge=-_FLOAT32_MAX, le=_FLOAT32_MAX)]


class VoiceIn(WireMessage):
    """A custom voice embedding, sent before the first Text: [1, dim, frames] finite float32
    values, at most `MAX_VOICE_VALUES`, exactly as many as the shape says (checked before use)."""

    type: Literal["Voice"] = "Voice"
    embeddings: list[EmbeddingValue] = Field(max_length=MAX_VOICE_VALUES)
    shape: tuple[Literal[1], PositiveInt, PositiveInt]

    @model_validator(mode="after")
    def _shape_fits_values(self) -> Self:
        # Python ints: a shape like [1, 2**32, 2**32] cannot wrap around to a small size.
        size = math.prod(self.shape)
        if size != len(self.embeddings):
            raise ValueError(f"shape {list(self.shape)} needs {size} values, got {len(self.embeddings)}")
        return self

    def array(self) -> npt.NDArray[np.float32]:
        """The embedding as a float32 array of its shape."""
        return np.asarray(self.embeddings, dtype=np.float32).reshape(self.shape)


# ---- TTS: server -> client ------------------------------------------------------------


class AudioOut(_AudioMessage):
    """Exactly one 1920-sample frame of generated audio."""


class TextOut(WireMessage):
    """A spoken word with its position on the output audio timeline."""

    type: Literal["Text"] = "Text"
    text: str
    start_s: float
    stop_s: float


# ---- /ready: how many streams a service takes ------------------------------------------


@dataclass(frozen=True)
class Capacity:
    """How many streams a service runs at once, and how many more it would take now: the
    `slots` and `free_slots` of its /ready answer, by which the orchestrator places streams."""

    slots: int
    free_slots: int


STT_CLIENT_MESSAGES: tuple[type[WireMessage], ...] = (AudioIn, MarkerIn)
STT_SERVER_MESSAGES: tuple[type[WireMessage], ...] = (Ready, Word, EndWord, Step, MarkerOut, Error)
TTS_CLIENT_MESSAGES: tuple[type[WireMessage], ...] = (TextIn, Eos, VoiceIn)
TTS_SERVER_MESSAGES: tuple[type[WireMessage], ...] = (Ready, AudioOut, TextOut, Error)


def describe_errors(exc: ValidationError, skip: int = 0) -> str:
    """A client-facing summary of a validation failure: each field (less the first `skip`
    parts of its location, e.g. the union tag) with what is wrong with it."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc'][skip:]) or 'message'}: {err['msg']}"
        for err in exc.errors(include_url=False)
    )


class MessageParser:
    """Decodes one binary frame into one of a closed set of message types.

    Every failure becomes a `ProtocolError` whose text names the rule that was broken,
    so the session can answer with an `Error` and carry on.
    """

    def __init__(self, messages: tuple[type[WireMessage], ...], max_bytes: int) -> None:
        union = Annotated[Union[messages], Field(discriminator="type")]  # noqa: UP007
        self._adapter: TypeAdapter[WireMessage] = TypeAdapter(union)
        self._types = sorted(m.model_fields["type"].default for m in messages)
        self._audio = "Audio" in self._types
        self.max_bytes = max_bytes

    def parse(self, data: bytes) -> WireMessage:
        """Parse a frame, raising `ProtocolError` with a client-facing explanation."""
        if len(data) > self.max_bytes:
            raise ProtocolError(f"message too large: {len(data)} bytes (limit {self.max_bytes})")
        raw = _unpack_audio(data) if self._audio else None
        if raw is not None:
            return self.validate(raw)
        # msgpack bounds every length by the frame's size (max_bytes, checked above) and the
        # nesting by its fixed stack (1024 levels); ints are at most 64-bit. Either failure
        # is a ValueError subclass, as are bad UTF-8 and trailing bytes.
        try:
            raw = msgpack.unpackb(data, raw=False, strict_map_key=True)
        except msgpack.StackError:
            raise ProtocolError("not a msgpack message: nested too deeply") from None
        except ValueError as exc:
            raise ProtocolError(f"not a msgpack message: {exc}") from None
        return self.validate(raw)

    def validate(self, raw: object) -> WireMessage:
        """Validate an already decoded message (e.g. a text frame that moshi-server reads as `Text`)."""
        if not isinstance(raw, dict):
            raise ProtocolError(f"message must be a msgpack map, got {type(raw).__name__}")
        kind = raw.get("type")
        if not isinstance(kind, str) or kind not in self._types:
            shown = reprlib.repr(kind)  # a hostile `type` can be a 2 MB structure: echo a short view
            raise ProtocolError(f"unknown message type {shown}; expected one of {', '.join(self._types)}")
        try:
            return self._adapter.validate_python(raw)
        except ValidationError as exc:
            raise ProtocolError(f"invalid {kind} message: {describe_errors(exc, skip=1)}") from None
