"""Every regex of guardctl means the same on every supported Python (issue 13).

Possessive quantifiers (`*+`, `++`, `?+`, `{m,n}+`) and atomic groups (`(?>...)`) came with
Python 3.11: 3.10 refuses them ("multiple repeat"), and Debian 12's 3.11.2 has an engine bug
in them (`(?:a++|'[^']*+')++` takes an unclosed quote). So none may appear, in the code or
in the data files regexes are read from. tests/test_pythons.py runs this module on every
supported interpreter found, 3.10 included, where importing is the test.
"""

from __future__ import annotations

import ast
import importlib
import json
import pkgutil
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import guardctl
from guardctl.masking.detectors import default_detectors

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "guardctl"


def test_every_module_imports() -> None:
    # a module-level regex that an interpreter refuses makes every command crash there
    for module in pkgutil.walk_packages(guardctl.__path__, "guardctl."):
        if not module.name.endswith(".__main__"):  # importing those runs them
            importlib.import_module(module.name)


def test_every_bundled_detector_compiles() -> None:
    assert default_detectors()


def _code_strings(path: Path) -> Iterator[str | bytes]:
    """Each string and bytes literal of a module; an f-string with `x` for its fields."""
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
            yield node.value
        elif isinstance(node, ast.JoinedStr):
            yield "".join(
                part.value if isinstance(part, ast.Constant) else "x" for part in node.values
            )


def _data_strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _data_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _data_strings(item)


def _all_strings() -> Iterator[tuple[str, str | bytes]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        for text in _code_strings(path):
            yield str(path.relative_to(REPO)), text
    for path in sorted((PACKAGE / "data").glob("*.json")):
        for text in _data_strings(json.loads(path.read_text("utf-8"))):
            yield str(path.relative_to(REPO)), text
    for path in sorted((REPO / "rules").glob("*.yaml")):
        for text in _data_strings(yaml.safe_load(path.read_text("utf-8"))):
            yield str(path.relative_to(REPO)), text


def _uses_new_syntax(pattern: str | bytes) -> bool:
    """Whether `pattern`, read as a regex, has a possessive repeat or an atomic group."""
    from re import _constants, _parser  # type: ignore[attr-defined]

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "possible nested set" in text that is no regex
            tree = _parser.parse(pattern)
    except Exception:  # noqa: BLE001 - most strings are no regex at all
        return False
    new = {_constants.POSSESSIVE_REPEAT, _constants.ATOMIC_GROUP}

    def walk(node: object) -> bool:
        if isinstance(node, _parser.SubPattern):
            return any(op in new or walk(av) for op, av in node.data)
        if isinstance(node, (tuple, list)):
            return any(walk(item) for item in node)
        return False

    return walk(tree)


@pytest.mark.skipif(
    sys.version_info < (3, 11),
    reason="3.10 cannot parse these at all: test_every_module_imports and the masking "
    "tests compile them there",
)
def test_no_regex_uses_possessive_quantifiers_or_atomic_groups() -> None:
    found = sorted({(where, text) for where, text in _all_strings() if _uses_new_syntax(text)})
    assert found == [], "\n".join(f"{where}: {text!r}" for where, text in found)


@pytest.mark.parametrize(
    ("text", "word"),
    [("a'", "a"), ("2'a", "2"), ('a"b', "a"), ("x'y'z'", "x'y'z"), ("a'b'\"c", "a'b'")],
)
def test_the_fast_path_word_stops_before_an_unclosed_quote(text: str, word: str) -> None:
    # 3.11.2's engine took the quote into the word with the old possessive regex
    from guardctl.firewall.parse import _FAST_TOKEN

    found = _FAST_TOKEN.match(text)
    assert found is not None and found["word"] == word
