"""Settings shared by every service, read from the environment, then `.env`, then defaults.

Each service subclasses `ServiceSettings` with its own prefix (``STT_``, ``TTS_``), so
the `.env` port map (``STT_PORT=3001``...) configures it directly. Keys used by every
service (``SERVICE_API_KEY``, ``LOG_LEVEL``) have no prefix.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Network, auth, limits and logging of one model service."""

    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", populate_by_name=True, env_ignore_empty=True, validate_default=True
    )

    host: str = Field("127.0.0.1", description="Address to bind; internal services stay on loopback.")
    port: int = Field(8080, ge=0, le=65535)
    service_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("SERVICE_API_KEY", "service_api_key"),
        description="Value clients must send in the kyutai-api-key header.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", validation_alias=AliasChoices("LOG_LEVEL", "log_level")
    )
    log_format: Literal["json", "text"] = Field(
        "json", validation_alias=AliasChoices("LOG_FORMAT", "log_format")
    )
    max_message_bytes: int = Field(
        2 * 1024 * 1024,
        gt=0,
        validation_alias=AliasChoices("MAX_MESSAGE_BYTES", "max_message_bytes"),
        description=(
            "Largest WebSocket message accepted (about 17 s of audio); a bigger one is refused as its "
            "frame header arrives: close 1009 (message too big), the limit in the reason."
        ),
    )
    max_messages_per_second: float = Field(
        400.0,
        gt=0,
        validation_alias=AliasChoices("MAX_MESSAGES_PER_SECOND", "max_messages_per_second"),
        description=(
            "Per-connection rate of messages whose cost no other limit bounds (control, invalid, tiny "
            "audio); a connection that keeps sending faster is closed with 1008. Reads never wait on it."
        ),
    )

    http_header_timeout_s: float = Field(
        10.0,
        gt=0,
        validation_alias=AliasChoices("HTTP_HEADER_TIMEOUT_S", "http_header_timeout_s"),
        description=(
            "A connection must send a whole request head (an HTTP request line and headers, or a "
            "WebSocket upgrade) within this many seconds of connecting or of its previous response; "
            "else it is closed, with 408 if it had begun one. Silent and slowloris connections end."
        ),
    )
    http_body_timeout_s: float = Field(
        30.0,
        gt=0,
        validation_alias=AliasChoices("HTTP_BODY_TIMEOUT_S", "http_body_timeout_s"),
        description="Longest pause while a request body arrives; a longer one is answered 408 and closed.",
    )
    http_keepalive_timeout_s: float = Field(
        5.0,
        gt=0,
        validation_alias=AliasChoices("HTTP_KEEPALIVE_TIMEOUT_S", "http_keepalive_timeout_s"),
        description="An idle keep-alive connection is closed after this many seconds.",
    )
    ws_ping_interval_s: float = Field(
        20.0,
        gt=0,
        validation_alias=AliasChoices("WS_PING_INTERVAL_S", "ws_ping_interval_s"),
        description="Seconds between the server's keepalive pings on an open WebSocket.",
    )
    ws_ping_timeout_s: float = Field(
        20.0,
        gt=0,
        validation_alias=AliasChoices("WS_PING_TIMEOUT_S", "ws_ping_timeout_s"),
        description=(
            "A WebSocket whose peer answers no ping for this many seconds is closed (1011): a client "
            "that vanished without a close (a half-open connection) gives its slot back."
        ),
    )

    def websocket_message_limit(self) -> int:
        """The largest WebSocket message this service's endpoint takes, in bytes. The transport
        refuses a bigger one as its frame header arrives (close 1009), before buffering it."""
        return self.max_message_bytes

    def required_api_key(self) -> SecretStr:
        """The service key, or a clear error naming where to set it."""
        if self.service_api_key is None:
            raise ValueError(
                "SERVICE_API_KEY is not set: set it in the environment or .env (make env writes one)"
            )
        return self.service_api_key
