"""The fakes the tests share, in one place: in-process backends for a session
(`backends`), and the STT and TTS services on real CPU engines with injected faults
(`faulty_stt`, `faulty_tts`, run as `python -m tests.fakes.faulty_stt`)."""
