"""kubectl's YAML scalars (go-yaml v2 through sigs.k8s.io/yaml), not PyYAML's."""

from __future__ import annotations

import math

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from guardctl.firewall import kubeyaml


def _value(text: str) -> object:
    (doc,) = kubeyaml.load_all(f"v: {text}\n")
    assert isinstance(doc, dict)
    return doc["v"]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        # booleans: y/n too, in every case kubectl accepts
        ("y", True), ("Y", True), ("yes", True), ("YES", True), ("on", True), ("On", True),
        ("true", True), ("n", False), ("N", False), ("no", False), ("OFF", False),
        ("false", False),
        # integers: Go's prefixes, leading-0 octal, underscores, signs
        ("0", 0), ("00", 0), ("+0", 0), ("-0", 0), ("0x0", 0), ("0X1f", 31), ("0o17", 15),
        ("0O17", 15), ("0b101", 5), ("0B11", 3), ("017", 15), ("1_000", 1000), ("-12", -12),
        # floats with an integral value are integers in the JSON kubectl sends
        ("0e0", 0), ("1e3", 1000), ("0.0", 0), ("2.5", 2.5),
        # strings stay strings
        ("'y'", "y"), ('"0"', "0"), ("1:30", "1:30"), ("yep", "yep"), ("0x", "0x"),
        ("~", None), ("null", None),
    ],
)
def test_scalars_read_as_kubectl_reads_them(text: str, value: object) -> None:
    found = _value(text)
    assert found == value and type(found) is type(value)


def test_infinities_and_nan_stay_floats() -> None:
    assert _value(".inf") == math.inf and _value("-.Inf") == -math.inf
    assert math.isnan(_value(".nan"))  # type: ignore[arg-type]


def test_json_integral_floats_are_integers() -> None:
    assert kubeyaml.json_decoder().decode('{"a": 0.0, "b": 1e2, "c": 1.5}') == {
        "a": 0, "b": 100, "c": 1.5
    }


@given(st.text(max_size=40))
def test_any_scalar_reads_or_fails_cleanly(text: str) -> None:
    try:
        list(kubeyaml.load_all(f"v: {text}\n"))
    except (yaml.YAMLError, ValueError, RecursionError):
        pass
