"""`python -m services`-style entry: `python -m orchestrator` runs the voice orchestrator."""

from __future__ import annotations

import argparse

import uvicorn
from pydantic import ValidationError

from orchestrator.app import build_app
from orchestrator.settings import OrchestratorSettings
from services.common.logs import configure_logging


def parse_args(argv: list[str] | None = None) -> dict[str, object]:
    """Command-line overrides, only for the flags given."""
    parser = argparse.ArgumentParser(prog="python -m orchestrator", description="Unmute voice orchestrator")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--llm-url", dest="llm_url", help="OpenAI base URL of the LLM, or 'echo'")
    parser.add_argument("--stt-url", dest="stt_url")
    parser.add_argument("--tts-url", dest="tts_url")
    args = parser.parse_args(argv)
    return {k: v for k, v in vars(args).items() if v is not None}


def main(argv: list[str] | None = None) -> None:
    """Read settings, configure logging, serve."""
    try:
        settings = OrchestratorSettings(**parse_args(argv))  # type: ignore[arg-type]
        configure_logging(settings.log_level, settings.log_format)
        app = build_app(settings)
    except (ValidationError, ValueError) as exc:
        raise SystemExit(f"orchestrator: bad settings: {exc}") from None
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        ws_max_size=16 * 1024 * 1024,
        ws_per_message_deflate=False,
    )


if __name__ == "__main__":
    main()
