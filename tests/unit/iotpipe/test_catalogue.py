"""The sensor-type catalogue is data, validated when loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from iotpipe.catalogue import load_catalogue
from iotpipe.errors import ConfigError

REQUIRED = {"temperature", "humidity", "pressure", "vibration", "power", "co2", "gas"}


def test_packaged_catalogue_has_the_required_types() -> None:
    cat = load_catalogue()
    assert cat.names >= REQUIRED
    assert cat["gas"].priority == "high"
    assert [t.name for t in cat.by_priority("high")] == ["gas"]
    for t in cat.types.values():
        low, high = t.range
        assert low < high and t.unit


def test_custom_catalogue(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "types:\n  radon:\n    unit: Bq/m3\n    range: [0, 10000]\n    priority: high\n"
    )
    cat = load_catalogue(path)
    assert cat.names == {"radon"} and cat["radon"].critical == (None, None)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("types: {}\n", "non-empty"),
        ("nothing: 1\n", "non-empty"),
        ("types:\n  Bad-Name:\n    unit: x\n    range: [0, 1]\n", "Bad-Name"),
        ("types:\n  t:\n    unit: x\n    range: [1, 0]\n", "low < high"),
        ("types:\n  t:\n    unit: x\n    range: [0, 1]\n    priority: urgent\n", "priority"),
        ("types:\n  t:\n    unit: x\n    range: [0, 1]\n    colour: red\n", "colour"),
        ("types: [unclosed\n", "s.yaml"),
    ],
)
def test_bad_catalogues_name_the_problem(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_catalogue(path)


def test_missing_catalogue_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.yaml"):
        load_catalogue(tmp_path / "missing.yaml")
