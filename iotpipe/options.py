"""Command-line options that are settings: declared once, in the settings models.

A CLI option such as ``iotpipe simulate --devices`` is the setting
``SimulatorSettings.devices`` given on the command line: its environment
variable and help text come from the model (``setting_option``), and
``override`` lays the given values over the loaded settings and validates
them again, so an option and its ``IOTPIPE_*`` variable cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from pydantic_settings import BaseSettings

from iotpipe.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def env_var(model: type[BaseSettings], name: str) -> str:
    """The environment variable of one setting (``IOTPIPE_SIM_DEVICES``)."""
    if name not in model.model_fields:
        raise KeyError(f"{model.__name__} has no setting {name!r}")
    return f"{model.model_config.get('env_prefix', '')}{name}".upper()


def setting_option(model: type[BaseSettings], name: str, *flags: str) -> Any:
    """A typer option for one setting; leave its default ``None`` (= keep the setting)."""
    return typer.Option(
        *flags, envvar=env_var(model, name), help=model.model_fields[name].description
    )


def override(current: M, given: Mapping[str, Any], flags: Mapping[str, str] | None = None) -> M:
    """``current`` with the options that were given (not None), validated again.

    An invalid value is a ``ConfigError`` naming the option (``flags`` maps a
    field to its flag where that is not ``--field-name``) and, for settings,
    its environment variable.
    """
    values = {k: v for k, v in given.items() if v is not None}
    if not values:
        return current
    try:
        return type(current).model_validate({**current.model_dump(), **values})
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]) if err["loc"] else "?"
        option = (flags or {}).get(name, "--" + name.replace("_", "-"))
        model = type(current)
        if isinstance(current, BaseSettings) and name in model.model_fields:
            option += f" ({env_var(type(current), name)})"
        raise ConfigError(f"{option}: {err['msg']}") from exc
