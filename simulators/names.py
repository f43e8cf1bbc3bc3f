"""How simulated devices, sites and sensor types are named (valid ids, see the README).

Device ids are not stored: ``<prefix>-<zero-padded index>`` is computed when
needed, so half a million devices cost no Python strings at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from iotpipe.errors import ConfigError
from iotpipe.topics import ID_RE


@dataclass(frozen=True, slots=True)
class Naming:
    """Names of the simulated fleet: index -> device id, site, sensor type."""

    devices: int
    types: tuple[str, ...]
    sites: tuple[str, ...]
    device_prefix: str = "dev"

    def __post_init__(self) -> None:
        if self.devices < 1:
            raise ConfigError("devices must be at least 1")
        if not self.types:
            raise ConfigError("at least one sensor type is needed")
        if not self.sites:
            raise ConfigError("at least one site is needed")
        for site in self.sites:
            if not ID_RE.match(site):
                raise ConfigError(f"site {site!r} must be 1-64 chars of [A-Za-z0-9_.:-]")
        if not ID_RE.match(self.device_id(self.devices - 1)):
            raise ConfigError(
                f"device prefix {self.device_prefix!r} gives invalid ids; "
                "use [A-Za-z0-9_.:-], at most 50 chars"
            )

    @property
    def digits(self) -> int:
        """Width of the device number: at least 6 (dev-000042), more for big fleets."""
        return max(6, len(str(self.devices - 1)))

    def device_id(self, index: int) -> str:
        return f"{self.device_prefix}-{index:0{self.digits}d}"


def site_names(count: int, prefix: str = "site") -> tuple[str, ...]:
    """``count`` site names ``<prefix>-000``...; one site is just ``<prefix>``."""
    if count < 1:
        raise ConfigError("sites must be at least 1")
    if count == 1:
        return (prefix,)
    width = max(3, len(str(count - 1)))
    return tuple(f"{prefix}-{i:0{width}d}" for i in range(count))
