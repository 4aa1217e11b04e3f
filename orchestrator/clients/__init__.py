"""Clients of the three backends: STT and TTS (moshi-server protocol) and the LLM (OpenAI API)."""
