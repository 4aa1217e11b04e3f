"""slurm/'s Python modules for the unit tests. They are scripts beside the batch script, not a
package: they are imported as slurm/plan.py imports its siblings, with slurm/ on sys.path."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[3]
SLURM = ROOT / "slurm"


def load(name: str) -> ModuleType:
    """slurm/<name>.py as a module (slurm/ leaves sys.path again: its names are plain ones)."""
    sys.path.insert(0, str(SLURM))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(SLURM))
