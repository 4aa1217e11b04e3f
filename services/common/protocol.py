"""msgpack wire messages of Kyutai's moshi-server, as pydantic models.

One binary WebSocket frame carries one msgpack map whose first key is ``type``.
moshi-server encodes ``Vec<f32>`` fields (``pcm``, ``prs``) as float32 and ``f64``
fields (times) as float64; `WireMessage.pack` reproduces that, so Kyutai's own
clients and unmute's strict pydantic clients read our messages unchanged.

Reference: ../shared/reference/moshi-server-protocol.md (sections 0-2).
"""

from __future__ import annotations

import math
import reprlib
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

from services.common.audio import AudioFormatError, Pcm, to_pcm


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


# ---- STT: client -> server ------------------------------------------------------------


class AudioIn(WireMessage):
    """24 kHz mono float samples in [-1, 1], any length."""

    type: Literal["Audio"] = "Audio"
    pcm: PcmField
    single_float: ClassVar[bool] = True


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


class AudioOut(WireMessage):
    """Exactly one 1920-sample frame of generated audio."""

    type: Literal["Audio"] = "Audio"
    pcm: PcmField
    single_float: ClassVar[bool] = True


class TextOut(WireMessage):
    """A spoken word with its position on the output audio timeline."""

    type: Literal["Text"] = "Text"
    text: str
    start_s: float
    stop_s: float


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
        self.max_bytes = max_bytes

    def parse(self, data: bytes) -> WireMessage:
        """Parse a frame, raising `ProtocolError` with a client-facing explanation."""
        if len(data) > self.max_bytes:
            raise ProtocolError(f"message too large: {len(data)} bytes (limit {self.max_bytes})")
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
