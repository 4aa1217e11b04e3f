"""Where the deployment under test is: the `.env` (or a SLURM job's env file) named by
``--deployment-env``. Without it, the suite is left out of the run (tests/conftest.py): it
needs services someone started."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


class Deployment(BaseSettings):
    """Ports and secrets of a running deployment, as its env file states them."""

    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True)

    host: str = Field("127.0.0.1", validation_alias="UNMUTE_HOST")
    stt_port: int = Field(3001, validation_alias="STT_PORT")
    tts_port: int = Field(3003, validation_alias="TTS_PORT")
    orchestrator_port: int = Field(3004, validation_alias="ORCHESTRATOR_PORT")
    service_api_key: SecretStr = Field(validation_alias="SERVICE_API_KEY")
    access_token: SecretStr | None = Field(None, validation_alias="ACCESS_TOKEN")
    #: The orchestrator serves HTTPS/WSS with a certificate this file trusts (--deployment-ca).
    orchestrator_ca: Path | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file describes the deployment; a stray SERVICE_API_KEY exported in the shell
        # (another deployment's) must not override it. UNMUTE_HOST may come from either.
        return init_settings, dotenv_settings, env_settings

    @property
    def token(self) -> str | None:
        return self.access_token.get_secret_value() if self.access_token else None

    def http(self, port: int) -> str:
        return f"http://{self.host}:{port}"

    def ws(self, port: int) -> str:
        return f"ws://{self.host}:{port}"

    @property
    def orchestrator_tls(self) -> ssl.SSLContext | None:
        """What the orchestrator's certificate is checked with, when it serves TLS."""
        if self.orchestrator_ca is None:
            return None
        return ssl.create_default_context(cafile=str(self.orchestrator_ca))

    @property
    def orchestrator_verify(self) -> ssl.SSLContext | bool:
        """httpx's `verify` for the orchestrator: its certificate's context, or the default."""
        return self.orchestrator_tls or True

    @property
    def orchestrator_http(self) -> str:
        scheme = "https" if self.orchestrator_ca else "http"
        return f"{scheme}://{self.host}:{self.orchestrator_port}"

    @property
    def orchestrator_ws(self) -> str:
        scheme = "wss" if self.orchestrator_ca else "ws"
        return f"{scheme}://{self.host}:{self.orchestrator_port}"


@pytest.fixture(scope="session")
def deployment(request: pytest.FixtureRequest) -> Deployment:
    path = request.config.getoption("deployment_env")
    if path is None:
        pytest.fail("no deployment to test: pass --deployment-env PATH (a .env or a SLURM job's job.env)")
    if not Path(path).is_file():
        pytest.fail(f"--deployment-env {path}: no such file")
    ca = request.config.getoption("deployment_ca")
    if ca is not None and not Path(ca).is_file():
        pytest.fail(f"--deployment-ca {ca}: no such file")
    return Deployment(_env_file=path, orchestrator_ca=ca)
