"""Model services of Unmute on SLURM: speech-to-text (`services.stt`), text-to-speech
(`services.tts`), what only those two share (`services.common`), and the vLLM server's
tool-call settings (`services/llm`, shell and a chat template, no Python)."""
