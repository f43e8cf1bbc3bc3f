"""Command-line options that are settings: declared once, in the settings models.

A CLI option such as ``iotpipe simulate --devices`` is the setting
``SimulatorSettings.devices`` given on the command line: its environment
variable and help text come from the model (``setting_option``), and
``override`` lays the given values over the loaded settings and validates
them again, so an option and its ``IOTPIPE_*`` variable cannot disagree.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import typer
from pydantic import BaseModel, ValidationError
from pydantic_settings import BaseSettings

from iotpipe.errors import ConfigError

M = TypeVar("M", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Any])


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


def _cli_type(annotation: Any) -> Any:
    """The type typer parses: ``X | None`` is ``X``, a ``Literal`` of strings is ``str``
    (the settings model checks the choice and names it in the error)."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        (annotation,) = [a for a in get_args(annotation) if a is not type(None)]
        origin = get_origin(annotation)
    return str if origin is Literal else annotation


def settings_options(
    model: type[BaseSettings], flags: Mapping[str, tuple[str, ...]] | None = None
) -> Callable[[F], F]:
    """Give a command one option per field of ``model``, ahead of its own parameters.

    The decorated function's first parameter, ``options``, receives the given
    values by field name (None for an option not given, which keeps the
    setting). A field added to the model is an option at once; ``flags``
    names the ones whose flag is not ``--field-name``.
    """

    def wrap(func: F) -> F:
        generated = [
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[
                    _cli_type(info.annotation) | None,
                    setting_option(model, name, *(flags or {}).get(name, ())),
                ],
            )
            for name, info in model.model_fields.items()
        ]
        own = list(inspect.signature(func, eval_str=True).parameters.values())[1:]

        @functools.wraps(func)
        def command(**kwargs: Any) -> Any:
            options = {k: kwargs.pop(k) for k in model.model_fields if k in kwargs}
            return func(options, **kwargs)

        command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [*generated, *(p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own)]
        )
        return command  # type: ignore[return-value]

    return wrap
