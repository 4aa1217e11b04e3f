"""`python -m services.tts`: run the TTS service.

Every flag can also be set by environment (``TTS_ENGINE``, ``TTS_MODEL``, ``TTS_VOICE``,
``TTS_PORT``, ...) or `.env`; flags win.
"""

from __future__ import annotations

import argparse

from pydantic import ValidationError

from services.common.lifecycle import serve
from services.common.logs import configure_logging
from services.tts.app import build_app
from services.tts.settings import TtsSettings


def parse_args(argv: list[str] | None = None) -> dict[str, object]:
    """Command-line overrides, only for the flags given."""
    parser = argparse.ArgumentParser(prog="python -m services.tts", description="Unmute TTS service")
    parser.add_argument("--engine", choices=["moshi", "espeak"])
    parser.add_argument("--model", help="HF repo id or local checkpoint directory")
    parser.add_argument("--voice", help="default voice (moshi: name in the voice repo; espeak: e.g. en-us)")
    parser.add_argument("--voice-repo", dest="voice_repo", help="HF repo id or directory of voice embeddings")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--batch-size", type=int, dest="batch_size")
    parser.add_argument("--device", help="cuda, cpu or auto")
    parser.add_argument("--temperature", type=float, help="0 is greedy")
    args = parser.parse_args(argv)
    return {k: v for k, v in vars(args).items() if v is not None}


def main(argv: list[str] | None = None) -> None:
    """Read settings, configure logging, serve."""
    try:
        settings = TtsSettings(**parse_args(argv))  # type: ignore[arg-type]
        configure_logging(settings.log_level, settings.log_format)
        app = build_app(settings)
    except (ValidationError, ValueError) as exc:
        raise SystemExit(f"services.tts: bad settings: {exc}") from None
    serve(app, settings, app.state.model, "TTS")


if __name__ == "__main__":
    main()
