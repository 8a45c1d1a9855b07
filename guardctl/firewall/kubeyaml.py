"""YAML read the way kubectl reads it, so a manifest means to guardctl what it means to kubectl.

kubectl turns YAML into JSON with sigs.k8s.io/yaml, whose scalars follow go-yaml v2 (YAML
1.1 with Go's number syntax), not PyYAML's YAML 1.1. Where the two differ, a value guardctl
read as a string would reach the API server as a boolean or a number:

* booleans: `y`, `Y`, `n`, `N` too (besides yes/no/on/off/true/false in their three cases),
  so `privileged: y` is true;
* integers: Go's base prefixes in either case (`0x1F`, `0o17`, `0b101`), a leading 0 for
  octal, `_` anywhere; no sexagesimal (`1:30` stays a string);
* floats: `1e3` needs no dot; a float with an integral value becomes that integer in the
  JSON kubectl sends (`runAsUser: 0e0` is user 0), so it is read as the integer here.

JSON manifests are parsed as JSON, and an integral float there counts as the integer too.
"""

import json
import re
from collections.abc import Iterator
from functools import cache
from typing import Any

BOOL_TAG = "tag:yaml.org,2002:bool"
INT_TAG = "tag:yaml.org,2002:int"
FLOAT_TAG = "tag:yaml.org,2002:float"

_BOOLS = {
    word: value
    for value, words in ((True, ("y", "yes", "true", "on")), (False, ("n", "no", "false", "off")))
    for base in words
    for word in (base, base.capitalize(), base.upper())
}
_BOOL = re.compile("^(?:" + "|".join(_BOOLS) + ")$")
# an integer literal as go-yaml v2 and pflag read one (Go's strconv.ParseInt, base 0)
GO_INT = re.compile(r"^[-+]?(?:0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|[0-9][0-9_]*)$")
_FLOAT = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)


def to_int(text: str) -> int:
    """An integer literal as Go's strconv.ParseInt(s, 0, 64) reads it after go-yaml drops
    the underscores: 0x/0o/0b prefixes in either case, a leading 0 for octal."""
    digits = text.replace("_", "")
    sign = -1 if digits.startswith("-") else 1
    digits = digits.lstrip("+-")
    if digits[:2].lower() in ("0x", "0o", "0b"):
        return sign * int(digits, 0)
    if len(digits) > 1 and digits.startswith("0"):
        return sign * int(digits, 8)
    return sign * int(digits)


def integral(value: float) -> float | int:
    """A float as the JSON kubectl sends holds it: an integral value is an integer."""
    return int(value) if value.is_integer() else value  # False for nan and the infinities


@cache
def _loader() -> Any:
    import yaml

    base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    replaced = {BOOL_TAG, INT_TAG, FLOAT_TAG}

    class KubectlLoader(base):  # type: ignore[misc]
        pass

    KubectlLoader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag not in replaced]
        for first, resolvers in base.yaml_implicit_resolvers.items()
    }
    KubectlLoader.add_implicit_resolver(BOOL_TAG, _BOOL, list("yYnNtTfFoO"))
    KubectlLoader.add_implicit_resolver(INT_TAG, GO_INT, list("-+0123456789"))
    KubectlLoader.add_implicit_resolver(FLOAT_TAG, _FLOAT, list("-+0123456789."))
    KubectlLoader.add_constructor(
        BOOL_TAG, lambda loader, node: _BOOLS[loader.construct_scalar(node)]
    )
    KubectlLoader.add_constructor(
        INT_TAG, lambda loader, node: to_int(loader.construct_scalar(node))
    )
    KubectlLoader.add_constructor(
        FLOAT_TAG, lambda loader, node: _float(loader.construct_scalar(node))
    )
    return KubectlLoader


def _float(text: str) -> float | int:
    lowered = text.lower()
    if lowered.endswith(".inf"):
        return float("-inf") if lowered.startswith("-") else float("inf")
    if lowered == ".nan":
        return float("nan")
    return integral(float(text.replace("_", "")))


def load_all(text: str) -> Iterator[object]:
    """Every document of a YAML stream, as kubectl would read it; raises yaml.YAMLError or
    ValueError on text it cannot read."""
    import yaml

    yield from yaml.load_all(text, Loader=_loader())  # noqa: S506 - a safe loader


def json_decoder() -> json.JSONDecoder:
    """A JSON decoder whose integral floats are integers (see `integral`)."""
    return json.JSONDecoder(parse_float=lambda text: integral(float(text)))
