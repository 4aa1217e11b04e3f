"""Streaming text-to-speech service, wire-compatible with Kyutai's moshi-server."""
