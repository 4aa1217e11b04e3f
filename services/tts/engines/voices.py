"""Kyutai voice embeddings: where they are and what they are called.

A voice file is ``<name><suffix>`` where the suffix names the model it was made for
(``.<sig>@<epoch>.safetensors``), e.g. ``expresso/ex03-ex01_happy_001_channel1_334s.wav``
+ ``.1e68beda@240.safetensors``. Voices come from a local directory or from a Hugging
Face repo already in the cache (compute nodes are offline; `slurm/prefetch` fills it).
"""

from __future__ import annotations

from pathlib import Path

from services.tts.engines.base import VoiceError


def voice_folder(source: str) -> Path | None:
    """The directory holding the voices: `source` itself, or the cached snapshot of that repo."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(source, local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError, OSError):
        return None


class VoiceCatalogue:
    """Voice names and their files, for one model's suffix."""

    def __init__(self, source: str, suffix: str) -> None:
        self.source = source
        self.suffix = suffix
        folder = voice_folder(source)
        self._files: dict[str, Path] = {}
        if folder is not None:
            for file in sorted(folder.rglob(f"*{suffix}")):
                relative = file.relative_to(folder).as_posix()
                self._files[relative.removesuffix(suffix)] = file

    def names(self) -> list[str]:
        """All voice names, sorted."""
        return list(self._files)

    def path(self, name: str) -> Path:
        """The embedding file of `name`."""
        try:
            return self._files[name]
        except KeyError:
            raise VoiceError(
                f"unknown voice {name!r}: {len(self._files)} voices in {self.source} "
                "(GET /v1/voices lists them)"
            ) from None
