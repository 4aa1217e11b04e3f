"""The `python -m <service>` entry shared by STT, TTS and the orchestrator: flags override
environment and `.env`, bad settings end with one clear line, then uvicorn serves the app
until it is stopped, and the process exits non-zero if the service's model failed."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from fastapi import FastAPI
from pydantic import ValidationError

from kit.logs import configure_logging
from kit.settings import ServiceSettings

S = TypeVar("S", bound=ServiceSettings)


class ModelOutcome(Protocol):
    """What a model service keeps in `app.state.model`: whether its model failed, and why."""

    status: str

    @property
    def failed(self) -> bool: ...


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


def serve(
    app: FastAPI,
    settings: ServiceSettings,
    model: ModelOutcome | None,
    name: str,
    *,
    tls: tuple[Path, Path] | None = None,
) -> None:
    """Run uvicorn, over HTTPS/WSS when `tls` (certificate, key) is given; exit non-zero
    when the model failed to load or a step failed."""
    import uvicorn

    from kit.server import server_config

    server = uvicorn.Server(server_config(app, settings, tls=tls))
    server.run()
    if model is not None and model.failed:
        raise SystemExit(f"{name} service stopped: {model.status}")
