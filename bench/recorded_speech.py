"""Recorded human speech with transcripts, from Debian's `pocketsphinx-testdata` package
(`apt-get install pocketsphinx-testdata`; BSD licence): read sentences from a LibriVox
recording, card names and digits said into a microphone, and a robot command.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile

TESTDATA = Path("/usr/share/pocketsphinx/test/data")
RATE = 16_000
# Files without a transcript file of their own: the sentence the package's grammar
# goforward.gram names (<move>), and TIDIGITS' convention of spelling the digits in the name.
RAW_CLIPS = {"goforward.raw": "go forward ten meters", "tidigits/dhd.2934z.raw": "two nine three four zero"}
_TRANSCRIPT_LINE = re.compile(r"^<s>(.*)</s>\s*\((\S+)\)\s*$")


@dataclass(frozen=True)
class Clip:
    """One recording and what is said in it."""

    name: str
    text: str
    audio: npt.NDArray[np.float32]  # 16 kHz mono


def available() -> bool:
    return TESTDATA.is_dir()


def _transcripts(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        if match := _TRANSCRIPT_LINE.match(line.strip()):
            found[match[2]] = " ".join(match[1].split())
    return found


def clips() -> list[Clip]:
    """Every clip with a transcript (12 clips, 40 s)."""
    if not available():
        raise FileNotFoundError(f"{TESTDATA} is missing: apt-get install pocketsphinx-testdata")
    out = []
    for folder, listing in (("librivox", "transcription"), ("cards", "cards.transcription")):
        for name, text in _transcripts(TESTDATA / folder / listing).items():
            audio, rate = soundfile.read(TESTDATA / folder / f"{name}.wav", dtype="float32")
            assert rate == RATE
            out.append(Clip(f"{folder}/{name}", text, audio))
    for name, text in RAW_CLIPS.items():
        pcm = np.fromfile(TESTDATA / name, dtype="<i2").astype(np.float32) / 32768.0
        out.append(Clip(name, text, pcm))
    return out


def clip(name: str) -> Clip:
    """One clip by name (e.g. "goforward.raw", "librivox/sense_and_sensibility_01_austen_64kb-0880")."""
    return next(c for c in clips() if c.name == name)
