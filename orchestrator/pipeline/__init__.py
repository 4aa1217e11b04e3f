"""One conversation's pipeline: turn detection, history, speech-ready text, latency, and
the session that ties them to the STT, LLM and TTS clients."""
