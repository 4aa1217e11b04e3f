"""`python -m services.stt`: run the STT service.

Every flag can also be set by environment (``STT_ENGINE``, ``STT_MODEL``, ``STT_PORT``,
...) or `.env`; flags win.
"""

from __future__ import annotations

from kit.serve import common_flags, run
from services.stt.app import build_app
from services.stt.settings import SttSettings


def main(argv: list[str] | None = None) -> None:
    """Read flags and settings, serve."""
    parser = common_flags("python -m services.stt", "Unmute STT service")
    parser.add_argument("--engine", choices=["moshi", "whisper"])
    parser.add_argument("--model", help="HF repo id or local checkpoint directory")
    parser.add_argument("--batch-size", type=int, dest="batch_size")
    parser.add_argument("--device", help="cuda, cpu or auto")
    run("STT", parser, SttSettings, build_app, argv)


if __name__ == "__main__":
    main()
