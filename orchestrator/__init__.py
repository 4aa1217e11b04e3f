"""The orchestrator: browser UI, OpenAI-Realtime-compatible WebSocket, and one voice
pipeline per session (STT -> turn detection -> LLM -> TTS)."""
