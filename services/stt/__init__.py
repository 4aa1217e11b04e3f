"""Streaming speech-to-text service, wire-compatible with Kyutai's moshi-server."""
