"""Which detectors exist, in a fixed order: the order is part of the alert contract.

A detector's index (its place here) orders alerts of one device at one instant
and selects its class when an event becomes an ``Alert``. The built-in ones
register on import of ``flows.detectors`` in ``DETECTORS`` order; a user's own
detector registers after them with ``@register`` and is enabled by naming it
in ``DetectorConfig.detectors``.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Final, TypeVar

from iotpipe.errors import ConfigError

# Typed loosely on purpose: ``base.Detector`` imports this module (via the config),
# so naming it here would be a cycle; ``base.detector_class`` gives the typed view.
D = TypeVar("D", bound=type[Any])

# The built-in detectors' order, whatever order their modules are imported in.
DETECTORS: Final[tuple[str, ...]] = (
    "threshold",
    "ewma",
    "rate_of_change",
    "stuck",
    "silence",
    "out_of_range",
    "flapping",
)

_REGISTRY: dict[str, type[Any]] = {}


def register(cls: D) -> D:
    """Class decorator: make a ``Detector`` subclass available under its ``name``."""
    name: str = cls.name
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ConfigError(f"a detector named {name!r} is registered already")
    _REGISTRY[name] = cls
    names.cache_clear()
    return cls


@cache
def names() -> tuple[str, ...]:
    """Every registered detector, index order: the built-ins, then the rest as registered.

    Cached (``register`` clears it): ``make_alert`` asks for it once per alert."""
    extra = tuple(name for name in _REGISTRY if name not in DETECTORS)
    return tuple(name for name in DETECTORS if name in _REGISTRY) + extra


def lookup(name: str) -> type[Any]:
    return _REGISTRY[name]
