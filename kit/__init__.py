"""The plumbing every server of the project shares (the STT and TTS services and the
orchestrator): the moshi-server wire protocol, audio framing, auth, the HTTP/WebSocket edge,
logs, the settings base, the health routes and the images' healthcheck, the uvicorn runner.

It imports nothing of `services` or `orchestrator`, so each image carries only its own
server's code on top of it.
"""
