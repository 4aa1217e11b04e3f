"""Orchestrator settings: the `.env` port map plus ``ORCHESTRATOR_*`` keys, or flags."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import SettingsConfigDict

from kit.settings import ServiceSettings
from orchestrator.realtime.client_events import MAX_EVENT_OVERHEAD_CHARS


def _alias(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


def _url_list(value: str, schemes: tuple[str, ...], name: str) -> list[str]:
    """The comma-separated URLs in `value`, each with one of `schemes` and a host."""
    urls = [part.strip().rstrip("/") for part in value.split(",") if part.strip()]
    if not urls:
        raise ValueError(f"{name} lists no URL")
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in schemes or not parts.hostname:
            wanted = ", ".join(f"{scheme}://host:port" for scheme in schemes)
            raise ValueError(f"{name}: {url!r} is not a URL of the form {wanted}")
    return urls


class OrchestratorSettings(ServiceSettings):
    """Where the backends are, who may connect, and the conversation's limits."""

    model_config = SettingsConfigDict(
        env_prefix="ORCHESTRATOR_",
        env_file=".env",
        extra="ignore",
        populate_by_name=True,
        env_ignore_empty=True,
    )

    port: int = Field(3004, ge=0, le=65535)
    access_token: SecretStr | None = Field(
        None,
        validation_alias=_alias("ACCESS_TOKEN"),
        description="Required from browsers and clients when set.",
    )
    stt_port: int = Field(3001, validation_alias=_alias("STT_PORT"))
    tts_port: int = Field(3003, validation_alias=_alias("TTS_PORT"))
    llm_port: int = Field(3002, validation_alias=_alias("LLM_PORT"))
    stt_url: str | None = Field(
        None, validation_alias=_alias("STT_URL"), description="Default: loopback STT_PORT."
    )
    tts_url: str | None = Field(
        None, validation_alias=_alias("TTS_URL"), description="Default: loopback TTS_PORT."
    )
    llm_url: str | None = Field(
        None,
        validation_alias=_alias("LLM_URL"),
        description="OpenAI base URL, or 'echo'. Default: loopback LLM_PORT.",
    )
    stt_urls: str | None = Field(
        None,
        validation_alias=_alias("STT_URLS"),
        description="Comma-separated STT replicas (ws://host:port); wins over STT_URL.",
    )
    tts_urls: str | None = Field(
        None,
        validation_alias=_alias("TTS_URLS"),
        description="Comma-separated TTS replicas (ws://host:port); wins over TTS_URL.",
    )
    llm_urls: str | None = Field(
        None,
        validation_alias=_alias("LLM_URLS"),
        description="Comma-separated OpenAI base URLs of LLM replicas; wins over LLM_URL.",
    )
    tls_cert_file: Path | None = Field(
        None,
        description="PEM certificate (chain) to serve HTTPS/WSS with; needs tls_key_file.",
    )
    tls_key_file: Path | None = Field(None, description="PEM private key of tls_cert_file.")
    tls: Literal["off", "self-signed"] = Field(
        "off",
        description="self-signed: serve HTTPS with a certificate made at start (its fingerprint is "
        "logged); ignored when tls_cert_file is set.",
    )
    tls_hosts: str | None = Field(
        None,
        description="Comma-separated names and addresses a self-signed certificate is also for "
        "(in a container: the host's, which the browser uses).",
    )
    llm_api_key: SecretStr | None = Field(None, validation_alias=_alias("LLM_API_KEY"))
    llm_model: str | None = Field(
        None, validation_alias=_alias("LLM_MODEL"), description="Default: first listed."
    )
    llm_timeout_s: float = Field(15.0, gt=0, description="Longest wait for the LLM to answer.")
    llm_temperature: float = Field(0.7, ge=0, le=2)
    max_output_tokens: int = Field(300, gt=0, description="Default cap on a reply's tokens.")
    history_turns: int = Field(20, gt=0, description="User turns kept in the LLM context.")
    history_tokens: int = Field(3000, gt=0, description="Estimated tokens kept in the LLM context.")
    voice: str | None = Field(None, description="TTS voice; default: the TTS service's own.")
    turn_detection: Literal["server_vad", "semantic_vad"] = Field(
        "server_vad",
        description="A new session's turn detection (semantic_vad needs the turn model).",
    )
    turn_model_path: Path | None = Field(
        None,
        description="Smart Turn's ONNX file (semantic_vad); default: build/models/smart-turn-v3.2/.",
    )
    # bench/orchestrator_overhead.py: ~5 ms of CPU per session-second, so 128 sessions keep
    # one worker's core about two-thirds busy; an H200's 256 STT streams take two workers.
    max_sessions: int = Field(
        128, gt=0, description="Concurrent Realtime sessions each worker process accepts."
    )
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Worker processes behind the one port; each has its own session cap and metrics.",
    )
    max_append_bytes: int = Field(
        1024 * 1024,
        gt=0,
        description="Largest audio append (base64 text or binary frame): about 20 s of PCM16.",
    )
    max_events_per_second: float = Field(
        50.0,
        gt=0,
        description="Non-audio client events per second (twice that at once); floods are closed (1008).",
    )
    max_realtime_factor: float = Field(
        10.0,
        gt=1,
        description="Audio faster than this many times real time is slowed down (after a 5 s burst).",
    )

    def websocket_message_limit(self) -> int:
        """The largest Realtime client event, in bytes: an append's audio (base64 text, or a binary
        frame) plus the room every event has beyond its audio. That room is counted in characters
        when the event is parsed; its JSON is ASCII but for text fields, none of which comes near it."""
        return self.max_append_bytes + MAX_EVENT_OVERHEAD_CHARS

    def _loopback(self, url: str | None, port: int, scheme: str, path: str = "") -> str:
        return (url or f"{scheme}://127.0.0.1:{port}{path}").rstrip("/")

    @property
    def stt_ws(self) -> str:
        return self._loopback(self.stt_url, self.stt_port, "ws").replace("http", "ws", 1)

    @property
    def tts_ws(self) -> str:
        return self._loopback(self.tts_url, self.tts_port, "ws").replace("http", "ws", 1)

    @property
    def llm_base(self) -> str:
        return self._loopback(self.llm_url, self.llm_port, "http", "/v1")

    @field_validator("stt_urls", "tts_urls")
    @classmethod
    def _check_service_urls(cls, value: str | None, info: ValidationInfo) -> str | None:
        """Each replica checked, then kept as ws:// or wss:// (http(s):// is accepted too)."""
        if value is None:
            return None
        urls = _url_list(value, ("ws", "wss", "http", "https"), str(info.field_name).upper())
        # http(s):// becomes ws(s)://; only the scheme: a host name may contain "http".
        return ",".join("ws" + url.removeprefix("http") if url.startswith("http") else url for url in urls)

    @field_validator("llm_urls")
    @classmethod
    def _check_llm_urls(cls, value: str | None) -> str | None:
        return None if value is None else ",".join(_url_list(value, ("http", "https"), "LLM_URLS"))

    @property
    def stt_endpoints(self) -> list[str]:
        """The STT replicas (ws:// or wss://): STT_URLS, else the one `stt_ws`."""
        return self.stt_urls.split(",") if self.stt_urls else [self.stt_ws]

    @property
    def tts_endpoints(self) -> list[str]:
        """The TTS replicas (ws:// or wss://): TTS_URLS, else the one `tts_ws`."""
        return self.tts_urls.split(",") if self.tts_urls else [self.tts_ws]

    @property
    def llm_endpoints(self) -> list[str]:
        """The LLM replicas' OpenAI base URLs: LLM_URLS, else the one LLM_URL (or "echo")."""
        if self.llm_urls:
            return self.llm_urls.split(",")
        return ["echo"] if self.llm_url == "echo" else [self.llm_base]
