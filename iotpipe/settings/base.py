"""The settings' common ground: the variable prefix and the core (state, logging, catalogue)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "IOTPIPE_"
CONFIG_FILE_VAR = "IOTPIPE_CONFIG_FILE"


def _component(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, frozen=True, extra="ignore", case_sensitive=False)


class CoreSettings(BaseSettings):
    """Where state lives and which sensor catalogue to use."""

    model_config = _component(ENV_PREFIX)

    state_dir: Path = Field(
        Path(".iotpipe"), description="Data, logs, pid files and downloaded services."
    )
    sensors_file: Path | None = Field(
        None, description="Sensor-type catalogue (YAML); default: the packaged one."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
