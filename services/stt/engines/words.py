"""Turns the STT text-token stream into `Word`/`EndWord` messages, one token per frame.

This follows moshi-server's incremental decoder (moshi-core asr.rs `step_tokens`):
tokens other than pad (3) and word-start (0) accumulate into the current word; a pad
or word-start after a word emits the `Word`; a word-start also closes the previous
word with an `EndWord` and marks the start time of the next one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from kit.protocol import EndWord, Word

PAD_TOKEN = 3
WORD_START_TOKEN = 0


class WordDecoder:
    """Per-stream incremental decoder; `push` is called once per frame with that frame's token."""

    def __init__(self, decode: Callable[[list[int]], str]) -> None:
        self._decode = decode
        self._pending: list[int] = []
        self._last_stop = 0.0
        self._open_word = False

    @property
    def has_pending(self) -> bool:
        """Whether tokens of an unfinished word are waiting (a pad would then emit it)."""
        return bool(self._pending)

    def push(self, token: int, time_s: float) -> list[Word | EndWord]:
        """Feed one token emitted for audio at `time_s` (seconds on the stream timeline)."""
        if time_s < 0:
            return []  # still inside the model delay: the token describes no client audio
        if token not in (PAD_TOKEN, WORD_START_TOKEN):
            self._pending.append(token)
            return []
        events: list[Word | EndWord] = []
        if self._pending:
            text = self._decode(self._pending).strip()
            self._pending.clear()
            if text:
                events.append(Word(text=text, start_time=round(self._last_stop, 3)))
                self._open_word = True
        if token == WORD_START_TOKEN:
            if self._open_word:
                events.append(EndWord(stop_time=round(time_s, 3)))
                self._open_word = False
            self._last_stop = time_s
        return events


class SlotWordDecoders:
    """One `WordDecoder` per slot, fed a whole step's tokens at once.

    A pad token to a decoder with nothing pending changes nothing and emits nothing, and
    so does any token inside the model delay; most slots get one of those on most steps
    (silence, pauses between words), so only the others are visited.
    """

    def __init__(self, decode: Callable[[list[int]], str], batch_size: int) -> None:
        self._decode = decode
        self._decoders = [WordDecoder(decode) for _ in range(batch_size)]
        self._pending = np.zeros(batch_size, dtype=bool)

    def reset(self, slots: Sequence[int]) -> None:
        """New streams start in these slots."""
        for b in slots:
            self._decoders[b] = WordDecoder(self._decode)
        self._pending[list(slots)] = False

    def push(
        self, tokens: npt.NDArray[np.int64], times_s: npt.NDArray[np.float64], active: npt.NDArray[np.bool_]
    ) -> dict[int, list[Word | EndWord]]:
        """Feed every active slot its token; returns the events of the slots that produced some."""
        visit = active & (times_s >= 0) & ((tokens != PAD_TOKEN) | self._pending)
        events: dict[int, list[Word | EndWord]] = {}
        token_list, time_list = tokens.tolist(), times_s.tolist()  # Python numbers, converted at once
        for b in np.flatnonzero(visit).tolist():
            decoder = self._decoders[b]
            out = decoder.push(token_list[b], time_list[b])
            self._pending[b] = decoder.has_pending
            if out:
                events[b] = out
        return events
