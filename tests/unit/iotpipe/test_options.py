"""CLI options that are settings take their variable and help from the settings model."""

from __future__ import annotations

from typing import Any

import pytest
import typer

from iotpipe.errors import ConfigError
from iotpipe.options import env_var, override
from iotpipe.settings import SimulatorSettings, known_variables
from ops.cli import app


def _params() -> list[tuple[str, Any]]:
    """(command path, click parameter) for every option of every ``iotpipe`` command."""
    out = []
    stack: list[tuple[str, Any]] = [("iotpipe", typer.main.get_command(app))]
    while stack:
        path, cmd = stack.pop()
        out += [(path, p) for p in cmd.params]
        stack += [(f"{path} {n}", c) for n, c in getattr(cmd, "commands", {}).items()]
    assert len(out) > 50
    return out


def test_every_option_variable_is_a_real_setting() -> None:
    known = set(known_variables()) | {"IOTPIPE_CONFIG"}
    envvars = [(path, p.name, p.envvar) for path, p in _params() if p.envvar]
    assert len(envvars) > 50
    for path, name, var in envvars:
        assert var in known, f"{path} --{name}: {var} is not a setting"


def test_every_simulator_setting_is_an_option_with_its_help() -> None:
    sim = {p.envvar: p for path, p in _params() if path == "iotpipe simulate" and p.envvar}
    for field, info in SimulatorSettings.model_fields.items():
        param = sim[env_var(SimulatorSettings, field)]
        assert param.help == info.description


def test_override_validates_and_names_the_option_and_variable() -> None:
    base = SimulatorSettings()
    assert override(base, {"devices": 5, "rate": None}).devices == 5
    assert override(base, {}) is base
    with pytest.raises(ConfigError, match=r"--interval \(IOTPIPE_SIM_INTERVAL_S\): "):
        override(base, {"interval_s": -1}, {"interval_s": "--interval"})
