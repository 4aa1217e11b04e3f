"""Turns the STT text-token stream into `Word`/`EndWord` messages, one token per frame.

This follows moshi-server's incremental decoder (moshi-core asr.rs `step_tokens`):
tokens other than pad (3) and word-start (0) accumulate into the current word; a pad
or word-start after a word emits the `Word`; a word-start also closes the previous
word with an `EndWord` and marks the start time of the next one.
"""

from __future__ import annotations

from collections.abc import Callable

from services.common.protocol import EndWord, Word

PAD_TOKEN = 3
WORD_START_TOKEN = 0


class WordDecoder:
    """Per-stream incremental decoder; `push` is called once per frame with that frame's token."""

    def __init__(self, decode: Callable[[list[int]], str]) -> None:
        self._decode = decode
        self._pending: list[int] = []
        self._last_stop = 0.0
        self._open_word = False

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
