"""The secret detector registry, read from rules/secrets.yaml.

One entry there is one named credential format: a regex (its `secret` group is the part to
hide), optional keywords that must appear before the regex is worth running, an entropy
floor and examples that the tests run. `structure` holds the key names the masker's
line-based structure rules use. Nothing is read at import time: `default_rules()` loads the
bundled file once, on first use.

Example::

    >>> rules = parse_rules(text, source="my-secrets.yaml")
    >>> [text[s:e] for s, e in rules.detectors["github-pat"].find(line)]
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from functools import cache
from types import MappingProxyType
from typing import Any, NamedTuple

from guardctl.bundled import data_text
from guardctl.errors import RuleError

SECRETS_FILE = "secrets.yaml"

_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_DETECTOR_KEYS = frozenset(
    {
        "name", "description", "regex", "keywords", "entropy", "min_length", "multiline",
        "not_values", "not_after", "after", "prefilter", "examples",
    }
)
# how much text before a match `not_after` looks at
NOT_AFTER_WINDOW = 128
_EXAMPLE_KEYS = frozenset({"positive", "negative"})
_STRUCTURE_KEYS = frozenset({"secret_kinds", "data_keys", "credential_keys", "secret_name"})
_TOP_KEYS = frozenset({"structure", "detectors"})


def shannon_entropy(value: str) -> float:
    """Shannon entropy of `value` in bits per character (0.0 for the empty string)."""
    if not value:
        return 0.0
    total = len(value)
    return -sum(n / total * math.log2(n / total) for n in Counter(value).values())


class Detector:
    """One named credential format.

    A plain class, not a record: its regex is compiled on first use and kept.
    """

    __slots__ = (
        "name",
        "description",
        "regex",
        "keywords",
        "entropy",
        "min_length",
        "multiline",
        "not_values",
        "not_after",
        "after",
        "prefilter",
        "positive",
        "negative",
        "_pattern",
        "_group",
        "_not_values",
        "_not_after",
        "_after",
        "secret_group",
    )

    def __init__(
        self,
        name: str,
        description: str,
        regex: str,
        keywords: tuple[str, ...] = (),
        entropy: float = 0.0,
        min_length: int = 0,
        multiline: bool = False,
        positive: tuple[str, ...] = (),
        negative: tuple[str, ...] = (),
        not_values: str = "",
        not_after: str = "",
        after: str = "",
        secret_group: int = 0,
        prefilter: str = "",
    ) -> None:
        self.name = name
        self.description = description
        self.regex = regex
        # lower-case substrings, one of which every match contains; empty: always run
        self.keywords = keywords
        self.entropy = entropy
        self.min_length = min_length
        # a match may span lines (a key block), so the keyword's line alone is not enough
        self.multiline = multiline
        self.positive = positive
        self.negative = negative
        # a regex the whole secret part matches when it is no secret (a placeholder, ...)
        self.not_values = not_values
        # a regex found at the end of the text just before a match when the match is no
        # secret there (a name such as `checksum/secret:` or `Idempotency-Key:`)
        self.not_after = not_after
        # a regex that must be found at the end of the text before a match (its label)
        self.after = after
        # a Hyperscan regex that ends inside every match, after its first character (with
        # Hyperscan, the regex runs only where it ended; see mask._Prefilters); "": none
        self.prefilter = prefilter
        # the group that is the secret: 0, the one named `secret` (or `secret2`, ...) else the
        # whole match; N, group N; -1, the first group that matched something, else the whole
        # match (gitleaks' rules, see masking/gitleaks.py)
        self.secret_group = secret_group
        self._pattern: re.Pattern[str] | None = None
        self._group: int | str | tuple[str | int, ...] = 0
        self._not_values = re.compile(not_values) if not_values else None
        self._not_after = re.compile(not_after) if not_after else None
        self._after = re.compile(after) if after else None

    def __repr__(self) -> str:
        return f"Detector(name={self.name!r}, regex={self.regex!r})"

    @property
    def pattern(self) -> re.Pattern[str]:
        """Compiled on first use: most outputs never reach most detectors past the keyword
        pre-filter, and compiling all of them costs more than a whole `kubectl get`."""
        if self._pattern is None:
            self._pattern = re.compile(self.regex)
            # `secret`, or one of `secret`, `secret2`, ... (one per alternative of the regex)
            named = sorted(g for g in self._pattern.groupindex if re.fullmatch(r"secret\d*", g))
            self._group = named[0] if len(named) == 1 else tuple(named) if named else 0
            if self.secret_group > 0:
                self._group = self.secret_group
            elif self.secret_group < 0 and self._pattern.groups:
                self._group = tuple(range(1, self._pattern.groups + 1))
        return self._pattern

    def may_match(self, lowered: str) -> bool:
        """The keyword pre-filter: False when `lowered` (the text, lower-cased) cannot match."""
        return not self.keywords or any(k in lowered for k in self.keywords)

    def find(self, text: str, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int]]:
        """Spans of the secret parts in text[start:end] that pass the length and entropy floors."""
        for first, last, why in self.explain(text, start, end):
            if not why:
                yield first, last

    def explain(
        self, text: str, start: int = 0, end: int | None = None
    ) -> Iterator[tuple[int, int, str]]:
        """Every match of the regex in text[start:end]: the secret part's span, and why it is
        no secret ("" when it is one)."""
        stop = len(text) if end is None else end
        # most texts a detector is run on (the lines with its keywords) hold no match: a
        # search says so for less than setting up an iterator costs
        if self.pattern.search(text, start, stop) is None:
            return
        matches = self.pattern.finditer(text, start, stop)
        group = self._group
        for match in matches:
            if isinstance(group, tuple):
                fallback = match.span() if self.secret_group < 0 else (-1, -1)
                first, last = next(
                    (match.span(g) for g in group if match.end(g) > match.start(g) >= 0),
                    fallback,
                )
            else:
                first, last = match.span(group)
            if first < 0:
                continue
            yield first, last, self._rejection(text, first, last, match.start())

    def _rejection(self, text: str, first: int, last: int, at: int) -> str:
        if last - first < self.min_length:
            return f"shorter than {self.min_length} characters"
        if self.entropy:
            entropy = shannon_entropy(text[first:last])
            if entropy < self.entropy:
                return f"entropy {abs(entropy):.1f} bits per character, under {self.entropy:g}"
        if self._not_values is not None and self._not_values.fullmatch(text, first, last):
            return "a placeholder or reference (not_values)"
        window = max(0, at - NOT_AFTER_WINDOW)
        if self._not_after is not None and self._not_after.search(text, window, at):
            return "its name holds no secret (not_after)"
        if self._after is not None and self._after.search(text, window, at) is None:
            return "no label before it (after)"
        return ""



class StructureRules(NamedTuple):
    """Key names for the masker's structure rules (see `structure` in rules/secrets.yaml)."""

    secret_kinds: frozenset[str] = frozenset()
    data_keys: frozenset[str] = frozenset()
    credential_keys: frozenset[str] = frozenset()
    secret_name: re.Pattern[str] = re.compile(r"(?!)")


class SecretRules(NamedTuple):
    detectors: Mapping[str, Detector] = MappingProxyType({})
    structure: StructureRules = StructureRules()


class _Checker:
    """Type checks that name the file, the detector and the key in their error."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, problem: str) -> RuleError:
        return RuleError(f"{self.source}: {where}: {problem}")

    def mapping(self, value: Any, where: str, allowed: frozenset[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, "must be a mapping")
        unknown = sorted(str(k) for k in value if k not in allowed)
        if unknown:
            raise self.fail(where, f"unknown key {unknown[0]!r}")
        return value

    def strings(self, value: Any, where: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(where, "must be a list of strings")
        return tuple(value)

    def string(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(where, "must be a non-empty string")
        return value

    def regex(self, value: Any, where: str, compile_now: bool) -> str:
        text = self.string(value, where)
        try:
            if compile_now:
                re.compile(text)
        except re.error as exc:
            raise self.fail(where, f"invalid regex: {exc}") from None
        return text

    def flag(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(where, "must be true or false")
        return value

    def number(self, value: Any, where: str, upper: float) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(where, "must be a number")
        if not 0 <= value <= upper:
            raise self.fail(where, f"must be between 0 and {upper:g}")
        return float(value)


def _detector(raw: Any, index: int, check: _Checker, compile_now: bool) -> Detector:
    where = f"detector #{index + 1}"
    entry = check.mapping(raw, where, _DETECTOR_KEYS)
    name = check.string(entry.get("name"), f"{where}: key 'name'")
    if not _NAME.fullmatch(name):
        raise check.fail(f"{where}: key 'name'", f"{name!r} is not kebab-case")
    where = f"detector {name!r}"
    for key in ("description", "regex"):
        if key not in entry:
            raise check.fail(where, f"missing key {key!r}")
    examples = check.mapping(entry.get("examples", {}), f"{where}: key 'examples'", _EXAMPLE_KEYS)
    keywords = check.strings(entry.get("keywords", []), f"{where}: key 'keywords'")
    return Detector(
        name=name,
        description=check.string(entry["description"], f"{where}: key 'description'"),
        regex=check.regex(entry["regex"], f"{where}: key 'regex'", compile_now),
        keywords=tuple(k.lower() for k in keywords),
        entropy=check.number(entry.get("entropy", 0.0), f"{where}: key 'entropy'", 8.0),
        min_length=int(check.number(entry.get("min_length", 0), f"{where}: key 'min_length'", 1e6)),
        multiline=check.flag(entry.get("multiline", False), f"{where}: key 'multiline'"),
        not_values=_optional_regex(entry, "not_values", where, check),
        not_after=_optional_regex(entry, "not_after", where, check),
        after=_optional_regex(entry, "after", where, check),
        prefilter=_prefilter(entry, where, check),
        positive=check.strings(examples.get("positive", []), f"{where}: key 'examples.positive'"),
        negative=check.strings(examples.get("negative", []), f"{where}: key 'examples.negative'"),
    )


def _optional_regex(entry: dict[str, Any], key: str, where: str, check: _Checker) -> str:
    """A context regex of a detector, compiled now (they are few and short); "" if absent."""
    return check.regex(entry[key], f"{where}: key {key!r}", True) if key in entry else ""


def _prefilter(entry: dict[str, Any], where: str, check: _Checker) -> str:
    """A detector's Hyperscan prefilter (ASCII; Hyperscan compiles it when masking); "" if
    absent."""
    if "prefilter" not in entry:
        return ""
    text = check.string(entry["prefilter"], f"{where}: key 'prefilter'")
    if not text.isascii():
        raise check.fail(f"{where}: key 'prefilter'", "must be ASCII")
    return text


def _structure(raw: Any, check: _Checker) -> StructureRules:
    entry = check.mapping(raw, "structure", _STRUCTURE_KEYS)

    def names(key: str) -> frozenset[str]:
        return frozenset(check.strings(entry.get(key, []), f"structure: key {key!r}"))

    secret_name = entry.get("secret_name")
    return StructureRules(
        secret_kinds=names("secret_kinds"),
        data_keys=names("data_keys"),
        credential_keys=frozenset(k.lower() for k in names("credential_keys")),
        secret_name=(
            re.compile(check.regex(secret_name, "structure: key 'secret_name'", compile_now=True))
            if secret_name is not None
            else StructureRules().secret_name
        ),
    )


def parse_rules(
    text: str, source: str = f"rules/{SECRETS_FILE}", *, compile_now: bool = True
) -> SecretRules:
    """Validate a secrets file; errors raise RuleError naming source, detector, key.

    `compile_now=False` leaves each regex to be compiled on first use: only for the bundled
    file, whose every detector the test suite compiles and runs on its examples.
    """
    import yaml

    check = _Checker(source)
    try:
        raw = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506
    except yaml.YAMLError as exc:
        raise check.fail("not valid YAML", str(exc).replace("\n", " ")) from None
    return _rules_from(raw, check, compile_now)


def _rules_from(raw: Any, check: _Checker, compile_now: bool) -> SecretRules:
    top = check.mapping(raw if raw is not None else {}, "top level", _TOP_KEYS)
    entries = top.get("detectors", [])
    if not isinstance(entries, list):
        raise check.fail("key 'detectors'", "must be a list")
    detectors: dict[str, Detector] = {}
    for index, entry in enumerate(entries):
        detector = _detector(entry, index, check, compile_now)
        if detector.name in detectors:
            raise check.fail(f"detector {detector.name!r}", "duplicate name")
        detectors[detector.name] = detector
    return SecretRules(
        detectors=MappingProxyType(detectors),
        structure=_structure(top.get("structure", {}), check),
    )


def load_detectors(text: str | None = None) -> dict[str, Detector]:
    """The detector registry from `text`, or from the bundled rules/secrets.yaml when None."""
    rules = default_rules() if text is None else parse_rules(text)
    return dict(rules.detectors)


@cache
def default_rules() -> SecretRules:
    """The bundled rules/secrets.yaml, read once on first use from its JSON copy
    (`data/secrets.json`, made by scripts/gen_secrets_json.py): every run that starts
    kubectl loads the detectors, and PyYAML's import alone costs tens of milliseconds."""
    check = _Checker(f"rules/{SECRETS_FILE} (as data/secrets.json)")
    return _rules_from(json.loads(data_text("secrets.json")), check, compile_now=False)


def default_detectors() -> Mapping[str, Detector]:
    """The bundled detector registry (what DESIGN.md calls DETECTORS), loaded lazily."""
    return default_rules().detectors
