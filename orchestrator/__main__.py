"""`python -m orchestrator`: run the voice orchestrator (UI and /v1/realtime).

Every flag can also be set by environment (``ORCHESTRATOR_PORT``, ``LLM_URL``,
``ACCESS_TOKEN``, ...) or `.env`; flags win.
"""

from __future__ import annotations

from orchestrator.app import build_app
from orchestrator.settings import OrchestratorSettings
from services.common.cli import common_flags, run


def main(argv: list[str] | None = None) -> None:
    """Read flags and settings, serve."""
    parser = common_flags("python -m orchestrator", "Unmute voice orchestrator")
    parser.add_argument("--llm-url", dest="llm_url", help="OpenAI base URL of the LLM, or 'echo'")
    parser.add_argument("--stt-url", dest="stt_url")
    parser.add_argument("--tts-url", dest="tts_url")
    run("orchestrator", parser, OrchestratorSettings, build_app, argv)


if __name__ == "__main__":
    main()
