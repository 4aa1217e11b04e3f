"""Who may import whom (docs/architecture.md): read from every module's import statements, so a
stray import fails here before an image lacks the package it names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEVELOPMENT = {"devkit", "tests", "bench"}
# A package's modules, and the top-level packages (or `services` subpackages) they must not import.
FORBIDDEN = {
    "kit": {"services", "orchestrator", "cli", *DEVELOPMENT},
    "services": {"orchestrator", "cli", *DEVELOPMENT},
    "services/stt": {"services.tts"},
    "services/tts": {"services.stt"},
    "orchestrator": {"services", "cli", *DEVELOPMENT},
    "cli": {"services", "orchestrator", *DEVELOPMENT},
    "devkit": {"tests", "bench"},
}


def imported(path: Path) -> set[str]:
    """Every module a file imports by absolute name, at any depth (function-level imports too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def breaks(name: str, forbidden: set[str]) -> bool:
    return any(name == f or name.startswith(f"{f}.") for f in forbidden)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_is_below_it(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, package
    found = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in files
        for name in imported(path)
        if breaks(name, FORBIDDEN[package])
    }
    assert found == set()


def test_the_rule_catches_a_stray_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from services.stt.engines import moshi_engine\n")
    assert breaks("services.stt.engines", FORBIDDEN["services/tts"])
    assert {n for n in imported(module) if breaks(n, FORBIDDEN["orchestrator"])} == {"services.stt.engines"}
