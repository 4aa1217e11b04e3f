"""Find a Kyutai checkpoint given as a Hugging Face repo id or as a local directory.

A repo id is resolved by moshi's own `CheckpointInfo.from_hf_repo`, through the HF
cache (``HF_HOME``; ``HF_HUB_OFFLINE=1`` on compute nodes). A local directory holds
the same files as the repo; their names come from its ``config.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from moshi.models.loaders import CheckpointInfo


class CheckpointError(RuntimeError):
    """The model could not be found or its files are incomplete."""


def load_checkpoint_info(model: str) -> CheckpointInfo:
    """Resolve `model` (repo id or directory) into moshi's `CheckpointInfo`."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HFValidationError
    from moshi.models import loaders

    path = Path(model).expanduser()
    if path.is_dir():
        config_path = path / "config.json"
        if not config_path.is_file():
            raise CheckpointError(f"{path} has no config.json")
        config = json.loads(config_path.read_text())
        names = {
            "moshi_weights": config.get("moshi_name", loaders.MOSHI_NAME),
            "mimi_weights": config.get("mimi_name", loaders.MIMI_NAME),
            "tokenizer": config.get("tokenizer_name", loaders.TEXT_TOKENIZER_NAME),
        }
        files = {key: path / name for key, name in names.items()}
        missing = [str(f) for f in files.values() if not f.is_file()]
        mimi_config = config.get("mimi_config_name")
        if mimi_config and not (path / mimi_config).is_file():
            missing.append(str(path / mimi_config))
        if missing:
            raise CheckpointError(f"checkpoint directory {path} lacks: {', '.join(missing)}")
        return loaders.CheckpointInfo.from_hf_repo(
            f"local:{path.name}",  # only a label: every file below is given explicitly
            config_path=config_path,
            mimi_config_path=(path / mimi_config) if mimi_config else None,
            **files,
        )
    try:
        # Fetch config.json first: moshi treats a repo without one as a legacy Moshi 7B
        # and would fail later with a less helpful message.
        config_path = hf_hub_download(model, "config.json")
        return loaders.CheckpointInfo.from_hf_repo(model, config_path=config_path)
    except (EntryNotFoundError, HFValidationError, FileNotFoundError, OSError) as exc:
        raise CheckpointError(
            f"cannot load {model!r}: not a directory, and not complete in the Hugging Face cache "
            f"({type(exc).__name__}: {exc}). Run the prefetch step on a machine with internet access."
        ) from exc
