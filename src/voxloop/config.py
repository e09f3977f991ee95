"""Settings: one pydantic-settings class, VOXLOOP_* env vars plus an optional voxloop.toml."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from voxloop.errors import ConfigError

#: Secrets that ship in the code; accepted only when ``env == "dev"``.
PLACEHOLDER_SECRETS = frozenset({"", "dev-insecure-change-me", "changeme", "secret"})


class Settings(BaseSettings):
    """All runtime configuration of voxloop."""

    model_config = SettingsConfigDict(
        env_prefix="VOXLOOP_",
        toml_file="voxloop.toml",
        extra="ignore",
    )

    env: Literal["dev", "test", "prod"] = "dev"
    home: Path = Field(default=Path("voxloop-data"), description="Data directory.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the operational store; SQLite under home by default.",
    )
    secret_key: str = Field(
        default="dev-insecure-change-me",
        description="Key for pseudonymising customer identifiers and signing tokens.",
    )
    host: str = "127.0.0.1"
    port: int = 8000
    batch_size: int = Field(default=65_536, ge=1, description="Rows per ingest batch.")
    default_language: str = "zh"
    detect_webhook_url: str | None = Field(
        default=None, description="Webhook that receives new alerts (outbox, at least once)."
    )
    understand_taxonomy: Path | None = Field(
        default=None, description="Operator taxonomy YAML extending the default."
    )
    understand_corpora: Path | None = Field(
        default=None,
        description="Folder of labelled corpora (laid out like ../shared/data) that the "
        "first reading trains the default sentiment and emotion models from.",
    )
    understand_encoder: str | None = Field(
        default=None,
        description="Optional sentence encoder for the scenario model: 'local:minilm' (the "
        "'encoder' extra), 'local:/path/to/model' or 'openai:http://host/v1#model'. "
        "Unset: the TF-IDF model alone (no download, no service).",
    )
    understand_encoder_key: str | None = Field(
        default=None, description="API key sent to an 'openai:' embedding service."
    )
    stages_after_push: bool = Field(
        default=True,
        description="Run the post-ingest stages (understand, detect, analyze) in the "
        "server's background after an HTTP push stores records; pushes arriving meanwhile "
        "are coalesced into the next run.",
    )
    timezone: str = "Asia/Shanghai"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Read init kwargs, then env vars, then ``voxloop.toml``."""
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @field_validator("understand_encoder", "understand_encoder_key", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # An empty VOXLOOP_UNDERSTAND_ENCODER= means "no encoder", not a spec to compare.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("understand_encoder")
    @classmethod
    def _known_encoder_kind(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("local:", "openai:")):
            raise ValueError(
                f"understand_encoder {value!r}: expected 'local:PATH', 'local:minilm' or "
                "'openai:URL#MODEL'"
            )
        return value

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Settings:
        if self.env != "dev" and self.secret_key in PLACEHOLDER_SECRETS:
            raise ConfigError(
                "VOXLOOP_SECRET_KEY is a placeholder; set a real secret outside env=dev"
            )
        return self

    @property
    def resolved_database_url(self) -> str:
        """Return the operational store URL, defaulting to SQLite under ``home``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'voxloop.db').resolve()}"

    @property
    def lake_dir(self) -> Path:
        """Return the folder of analytical Parquet tables."""
        return self.home / "lake"


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, ``voxloop.toml`` and explicit overrides."""
    return Settings(**overrides)  # type: ignore[arg-type]
