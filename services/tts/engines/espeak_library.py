"""A small ctypes binding of the espeak-ng library shipped by the `espeakng-loader` wheel.

Only what the lite engine needs: initialise in synchronous mode, list voices, select
one, and synthesise a text into 16-bit samples together with espeak's own word events
(each carries the sample at which the word starts, so word times are measured, not
guessed). espeak-ng keeps global state: one `EspeakLibrary` per process, used from one
thread.
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
        ("languages", ctypes.c_char_p),
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


class EspeakLibrary:
    """The process-wide espeak-ng instance."""

    def __init__(self) -> None:
        import espeakng_loader

        self._lib = ctypes.cdll.LoadLibrary(espeakng_loader.get_library_path())
        self._lib.espeak_Initialize.restype = ctypes.c_int
        self._lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
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

    def voices(self) -> list[str]:
        """Language codes of every voice espeak-ng has (``en-us``, ``fr-fr``, ...)."""
        listing = self._lib.espeak_ListVoices(None)
        names, i = [], 0
        while listing[i]:
            names.append(listing[i].contents.languages[1:].split(b"\0")[0].decode())
            i += 1
        return sorted(set(names))

    def synthesize(self, text: str, voice: str) -> tuple[npt.NDArray[np.int16], list[WordMark]]:
        """Samples (at `sample_rate`) of `text` spoken by `voice`, and where each word starts."""
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
