"""A small ctypes binding of the espeak-ng library shipped by the `espeakng-loader` wheel.

Only what the lite engine needs: initialise in synchronous mode, list the voices that
load (with the identifier espeak-ng selects each by) and the voice variants, select one,
and synthesise a text into 16-bit samples together with espeak's own word events (each
carries the sample at which the word starts, so word times are measured, not guessed).
espeak-ng keeps global state: one `EspeakLibrary` per process, used from one thread.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


class _Voice(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        # A list of (priority byte, NUL-terminated language) ended by a zero byte: a plain
        # c_char_p would stop at the first NUL and lose every language after the first.
        ("languages", ctypes.c_void_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_Callback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclass(frozen=True)
class WordMark:
    """Where a word of the input text starts in the synthesised audio."""

    char_start: int  # 0-based character offset in the text
    sample: int


def _languages(address: int) -> list[str]:
    """The language codes of one voice, in espeak-ng's order."""
    codes = []
    while ctypes.c_ubyte.from_address(address).value:  # priority byte; zero ends the list
        code = ctypes.string_at(address + 1)
        codes.append(code.decode())
        address += len(code) + 2
    return codes


class EspeakLibrary:
    """The process-wide espeak-ng instance."""

    def __init__(self) -> None:
        import espeakng_loader

        self._lib = ctypes.cdll.LoadLibrary(espeakng_loader.get_library_path())
        self._lib.espeak_Initialize.restype = ctypes.c_int
        self._lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        self._lib.espeak_ListVoices.argtypes = [ctypes.POINTER(_Voice)]
        self._lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self._lib.espeak_TextToPhonemes.argtypes = [
            ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int,
        ]  # fmt: skip
        self._lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        data_parent = os.path.dirname(espeakng_loader.get_data_path())
        self.sample_rate = self._lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, data_parent.encode(), _INITIALIZE_DONT_EXIT
        )
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak-ng failed to initialise (data in {data_parent})")
        self._chunks: list[npt.NDArray[np.int16]] = []
        self._marks: list[tuple[int, int]] = []
        # Keep a reference: ctypes callbacks are freed with their Python object.
        self._callback = _Callback(self._on_audio)
        self._lib.espeak_SetSynthCallback(self._callback)
        self._voice: str | None = None

    def _on_audio(self, wav, count: int, events) -> int:
        if count > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            if events[i].type == _EVENT_WORD:
                self._marks.append((events[i].text_position, events[i].sample))
            i += 1
        return 0

    def _list(self, spec: _Voice | None) -> list[_Voice]:
        listing = self._lib.espeak_ListVoices(spec)
        found, i = [], 0
        while listing[i]:
            found.append(listing[i].contents)
            i += 1
        return found

    def voices(self) -> dict[str, str]:
        """Every voice by its language code (``en-us``, ``fr-fr``), with the identifier espeak-ng
        selects it by (``gmw/en-US``, ``roa/fr``): most codes are no voice name of their own."""
        found: dict[str, str] = {}
        for voice in self._list(None):
            found.setdefault(_languages(voice.languages)[0], voice.identifier.decode())
        return dict(sorted(found.items()))

    def variants(self) -> list[str]:
        """Names of the voice variants (``f3``, ``m1``...), which any voice takes as ``voice+variant``."""
        keyword = ctypes.create_string_buffer(b"variant")
        spec = _Voice(languages=ctypes.cast(keyword, ctypes.c_void_p))
        return sorted(v.identifier.decode().removeprefix("!v/") for v in self._list(spec))

    def loads(self, identifier: str) -> bool:
        """Whether espeak-ng can speak with this voice.

        Selecting a voice whose dictionary is missing from the data still succeeds (espeak
        only prints "Can't read dictionary file"), but it then turns any text into no
        phonemes at all, so a one-letter text tells the two apart.
        """
        self._voice = None  # whatever happens, the next synthesis selects its voice again
        if self._lib.espeak_SetVoiceByName(identifier.encode()) != 0:
            return False
        text = ctypes.create_string_buffer(b"a")
        cursor = ctypes.c_void_p(ctypes.addressof(text))
        return bool(self._lib.espeak_TextToPhonemes(ctypes.byref(cursor), _CHARS_UTF8, 0))

    def synthesize(self, text: str, voice: str) -> tuple[npt.NDArray[np.int16], list[WordMark]]:
        """Samples (at `sample_rate`) of `text` spoken by `voice` (an identifier, with an optional
        ``+variant``), and where each word starts."""
        if voice != self._voice:
            if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"espeak-ng has no voice {voice!r}")
            self._voice = voice
        self._chunks, self._marks = [], []
        data = text.encode()
        self._lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        self._lib.espeak_Synchronize()
        pcm = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.int16)
        # espeak counts positions in bytes from 1; map them back to characters.
        byte_to_char = {len(text[:i].encode()): i for i in range(len(text) + 1)}
        marks = [WordMark(byte_to_char.get(pos - 1, 0), sample) for pos, sample in self._marks]
        return pcm, marks
