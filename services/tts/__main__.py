"""`python -m services.tts`: run the TTS service.

Every flag can also be set by environment (``TTS_ENGINE``, ``TTS_MODEL``, ``TTS_VOICE``,
``TTS_PORT``, ...) or `.env`; flags win.
"""

from __future__ import annotations

from kit.serve import common_flags, run
from services.tts.app import build_app
from services.tts.settings import TtsSettings


def main(argv: list[str] | None = None) -> None:
    """Read flags and settings, serve."""
    parser = common_flags("python -m services.tts", "Unmute TTS service")
    parser.add_argument("--engine", choices=["moshi", "piper", "espeak"])
    parser.add_argument("--model", help="HF repo id or local checkpoint directory")
    parser.add_argument(
        "--voice",
        help="default voice (moshi: name in the voice repo; piper: name or .onnx file; espeak: e.g. en-us)",
    )
    parser.add_argument(
        "--piper-voices", dest="piper_voices", help="piper: a voice .onnx file or a directory of them"
    )
    parser.add_argument("--piper-threads", type=int, dest="piper_threads", help="piper: onnxruntime threads")
    parser.add_argument("--voice-repo", dest="voice_repo", help="HF repo id or directory of voice embeddings")
    parser.add_argument("--batch-size", type=int, dest="batch_size")
    parser.add_argument("--device", help="cuda, cpu or auto")
    parser.add_argument("--temperature", type=float, help="0 is greedy")
    run("TTS", parser, TtsSettings, build_app, argv)


if __name__ == "__main__":
    main()
