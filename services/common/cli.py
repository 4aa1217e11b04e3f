"""The `python -m <service>` entry shared by STT, TTS and the orchestrator: flags override
environment and `.env`, bad settings end with one clear line, then the server runs."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from fastapi import FastAPI
from pydantic import ValidationError

from services.common.lifecycle import serve
from services.common.logs import configure_logging
from services.common.settings import ServiceSettings

S = TypeVar("S", bound=ServiceSettings)


def common_flags(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser with the flags every service has (`--host`, `--port`)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--host", help="address to bind")
    parser.add_argument("--port", type=int)
    return parser


def run(
    name: str,
    parser: argparse.ArgumentParser,
    settings_cls: type[S],
    build_app: Callable[[S], FastAPI],
    argv: list[str] | None = None,
    *,
    tls: tuple[Path, Path] | None = None,
) -> None:
    """Parse flags, build settings and the app, serve until stopped (over HTTPS/WSS when
    `tls`, a certificate and its key that the caller has checked, is given)."""
    overrides: dict[str, Any] = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    try:
        settings = settings_cls(**overrides)
        configure_logging(settings.log_level, settings.log_format)
        app = build_app(settings)
    except (ValidationError, ValueError) as exc:
        raise SystemExit(f"{parser.prog}: bad settings: {exc}") from None
    serve(app, settings, getattr(app.state, "model", None), name, tls=tls)
