"""A team's gitleaks rules (a `gitleaks.toml`) as masker detectors, beside guardctl's own.

Each `[[rules]]` entry becomes a detector named `gitleaks-ID`, so a mask says which of the
team's rules fired: its `regex` (RE2 syntax, read as Python's `re` reads it after the few
spellings that differ are translated: `\\z`, POSIX classes, `\\Q…\\E`), `secretGroup` (else
the first capture group that matched, as gitleaks does, else the whole match), `entropy` and
`keywords`. Allowlists (the rule's own and the global ones) keep a match whose secret
contains one of their `regexes` or `stopwords`; `paths` and `commits` name files and commits,
which output has not. A rule Python cannot compile is reported, one line each, never
dropped in silence; `[extend] useDefault` (gitleaks' own default rules) is not read: guardctl's
own detectors stand in for them.
"""

from __future__ import annotations

import re
import sys
from typing import Any, NamedTuple

from guardctl.masking.detectors import Detector

PREFIX = "gitleaks-"
_POSIX = {
    "alnum": "0-9A-Za-z", "alpha": "A-Za-z", "ascii": "\\x00-\\x7f", "blank": " \\t",
    "cntrl": "\\x00-\\x1f\\x7f", "digit": "0-9", "graph": "!-~", "lower": "a-z",
    "print": " -~", "punct": "!-/:-@\\[-`{-~", "space": "\\s", "upper": "A-Z",
    "word": "\\w", "xdigit": "0-9A-Fa-f",
}
_POSIX_CLASS = re.compile(r"\[:(\^?)(\w+):\]")
_QUOTED = re.compile(r"\\Q(.*?)(?:\\E|$)", re.S)
# a leading run of inline flags, which Python wants at the very start
_FLAGS = re.compile(r"\(\?([imsU]+)\)")


class Imported(NamedTuple):
    detectors: tuple[Detector, ...]
    problems: tuple[str, ...]  # one line per rule left out, naming it and why


def import_rules(text: str, source: str) -> Imported:
    """The detectors of a gitleaks.toml's text; `source` names the file in problems.
    Raises ValueError (naming the file) when the text is no TOML at all."""
    data = _toml(text, source)
    shared = _allowlist_patterns(_allowlists(data), source, "the global allowlist")
    detectors: list[Detector] = []
    problems: list[str] = []
    rules = data.get("rules", [])
    if not isinstance(rules, list):
        raise ValueError(f"{source}: 'rules' must be a list of [[rules]] tables")
    for index, rule in enumerate(rules):
        try:
            detectors.append(_detector(rule, index, source, shared))
        except ValueError as err:
            problems.append(str(err))
    return Imported(tuple(detectors), tuple(problems))


def _toml(text: str, source: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{source}: not valid TOML: {err}") from None


def _allowlists(table: dict[str, Any]) -> list[dict[str, Any]]:
    """`allowlist` (one table) and `allowlists` (several), as gitleaks reads both."""
    found = [table["allowlist"]] if isinstance(table.get("allowlist"), dict) else []
    many = table.get("allowlists", [])
    return found + [a for a in many if isinstance(a, dict)] if isinstance(many, list) else found


def _allowlist_patterns(lists: list[dict[str, Any]], source: str, where: str) -> list[str]:
    """Regexes (Python syntax) any of which, found in a secret, keeps it."""
    patterns: list[str] = []
    for allow in lists:
        for regex in allow.get("regexes", []) or []:
            patterns.append(_python_regex(str(regex), source, f"{where}: regex {regex!r}"))
        words = [re.escape(str(w)) for w in allow.get("stopwords", []) or []]
        if words:
            patterns.append(f"(?i:{'|'.join(words)})")
    return patterns


def _detector(rule: Any, index: int, source: str, shared: list[str]) -> Detector:
    if not isinstance(rule, dict):
        raise ValueError(f"{source}: rule #{index + 1}: not a table")
    rule_id = str(rule.get("id") or f"rule-{index + 1}")
    where = f"{source}: rule {rule_id!r}"
    if "regex" not in rule:
        raise ValueError(f"{where}: has no regex (gitleaks' path-only rules find files)")
    regex = _python_regex(str(rule["regex"]), source, f"rule {rule_id!r}")
    group = rule.get("secretGroup", 0)
    if not isinstance(group, int) or group < 0 or group > re.compile(regex).groups:
        raise ValueError(f"{where}: secretGroup {group!r} is not a group of its regex")
    allow = shared + _allowlist_patterns(_allowlists(rule), source, f"rule {rule_id!r}")
    entropy = rule.get("entropy", 0.0)
    return Detector(
        name=PREFIX + _kebab(rule_id),
        description=str(rule.get("description") or f"gitleaks rule {rule_id}"),
        regex=regex,
        keywords=tuple(str(k).lower() for k in rule.get("keywords", []) or []),
        entropy=float(entropy) if isinstance(entropy, (int, float)) else 0.0,
        not_values=f"(?s:.*(?:{'|'.join(allow)}).*)" if allow else "",
        secret_group=group if group else -1,
    )


def _kebab(rule_id: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", rule_id.lower()).strip("-") or "rule"


def _python_regex(regex: str, source: str, what: str) -> str:
    """An RE2 regex as Python's `re` reads it; ValueError naming it when it cannot."""
    text = _QUOTED.sub(lambda m: re.escape(m.group(1)), regex)
    text = text.replace("\\z", "\\Z")
    try:
        text = _POSIX_CLASS.sub(_posix, text)
    except ValueError as err:
        raise ValueError(f"{source}: {what}: {err}") from None
    flags = ""
    while (leading := _FLAGS.match(text)) is not None:
        flags += leading.group(1)
        text = text[leading.end() :]
    if "U" in flags:
        raise ValueError(f"{source}: {what}: RE2's ungreedy flag (?U) has no Python spelling")
    text = f"(?{''.join(sorted(set(flags)))}){text}" if flags else text
    try:
        re.compile(text)
    except re.error as err:
        raise ValueError(f"{source}: {what}: Python's re cannot compile it: {err}") from None
    return text


def _posix(found: re.Match[str]) -> str:
    negate, name = found.groups()
    if name not in _POSIX:
        raise ValueError(f"unknown POSIX class [:{name}:]")
    members = _POSIX[name]
    return f"[^{members}]" if negate else members
