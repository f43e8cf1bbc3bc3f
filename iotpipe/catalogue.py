"""The sensor-type catalogue: which types exist and how to judge their values.

Kept as data (``sensors.yaml``) so operators add a type without a release.
"""

from __future__ import annotations

from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from iotpipe.errors import ConfigError

SENSOR_TYPE_PATTERN = r"^[a-z0-9_]{1,64}$"

Bounds = tuple[float | None, float | None]


class SensorType(BaseModel):
    """One sensor type's unit, limits and priority."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=SENSOR_TYPE_PATTERN)
    unit: str = Field(min_length=1, max_length=32)
    range: tuple[float, float]
    warning: Bounds = (None, None)
    critical: Bounds = (None, None)
    priority: Literal["normal", "high"] = "normal"
    max_rate: float | None = Field(None, gt=0)
    # Stuck-sensor rule for this type (None: the detector's defaults). How many
    # identical readings are suspicious depends on the sensor's resolution
    # against its noise: a coarse sensor repeats values legitimately.
    stuck_min_count: int | None = Field(None, ge=2)
    stuck_min_s: float | None = Field(None, ge=0)
    typical: tuple[float, float, float] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> SensorType:
        if self.range[0] >= self.range[1]:
            raise ValueError(f"range {self.range} must be [low, high] with low < high")
        for label, (low, high) in (("warning", self.warning), ("critical", self.critical)):
            if low is not None and high is not None and low >= high:
                raise ValueError(f"{label} {low, high} must be [low, high] with low < high")
        return self


class Catalogue(BaseModel):
    """All configured sensor types, by name."""

    model_config = ConfigDict(frozen=True)

    types: dict[str, SensorType]

    def __contains__(self, name: object) -> bool:
        return name in self.types

    def __getitem__(self, name: str) -> SensorType:
        return self.types[name]

    @cached_property
    def names(self) -> frozenset[str]:
        return frozenset(self.types)

    def by_priority(self, priority: Literal["normal", "high"]) -> list[SensorType]:
        return [t for t in self.types.values() if t.priority == priority]


def load_catalogue(path: Path | None = None) -> Catalogue:
    """Load and validate a catalogue file (the packaged one by default)."""
    source = str(path) if path else "iotpipe/sensors.yaml"
    try:
        if path is None:
            text = resources.files("iotpipe").joinpath("sensors.yaml").read_text("utf-8")
        else:
            text = Path(path).read_text("utf-8")
        data = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"sensor catalogue {source}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("types"), dict) or not data["types"]:
        raise ConfigError(f"sensor catalogue {source}: needs a non-empty 'types:' mapping")
    types: dict[str, SensorType] = {}
    for name, spec in data["types"].items():
        try:
            types[name] = SensorType(name=name, **(spec or {}))
        except (ValidationError, TypeError) as exc:
            raise ConfigError(f"sensor catalogue {source}: type {name!r}: {exc}") from exc
    return Catalogue(types=types)
