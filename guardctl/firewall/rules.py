"""Rules: YAML text in, validated `Rule` objects out.

A rules file is a mapping with a `rules:` list. Each rule has `id`, `action`
(allow/approve/deny), `reason` and `match`; `match` is a short pattern string
(`"delete namespace"`), a mapping (keys in `MATCH_KEYS`), or a list of those (any may match).
Unknown keys are errors, not warnings: this is a security tool and a typo must not
silently disable a rule. Every error names the file, the rule id or position, and the key.

Later files replace earlier rules of the same id, so a user can tighten or loosen one
default rule without copying the whole policy; `disabled: true` removes it.
"""

import shlex
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

from guardctl import stampcache
from guardctl.errors import RuleError
from guardctl.model import Action

RULE_KEYS = frozenset({"id", "action", "reason", "match", "unless", "disabled", "description"})
KUBECTL_KEYS = frozenset(
    {"verbs", "resources", "namespaces", "flags", "risks", "dry_run", "objects"}
)
ANY_COMMAND_KEYS = frozenset(
    {"programs", "subcommands", "args", "env", "writes", "mentions", "understood"}
)
MATCH_KEYS = KUBECTL_KEYS | ANY_COMMAND_KEYS
FLAG_CONDITION_KEYS = frozenset({"name", "in", "not_in", "global"})


class FlagCondition(NamedTuple):
    """A flag that is set (and not "false"); with `in`/`not_in`, some value must (not) match."""

    name: str
    values_in: tuple[str, ...] = ()
    values_not_in: tuple[str, ...] = ()
    global_only: bool = False  # only kubectl's global flag of that name, not a command's own


class Match(NamedTuple):
    """One alternative of a rule's `match`: every given key must hold; within a key, any item."""

    verbs: tuple[tuple[str, ...], ...] = ()  # verb paths as word tuples, matched as prefixes
    resources: tuple[
        str, ...
    ] = ()  # qualified plural names ("namespaces", "deployments.apps"), "*"
    namespaces: tuple[str, ...] = ()  # globs
    flags: tuple[FlagCondition, ...] = ()  # every condition must hold
    risks: tuple[str, ...] = ()
    objects: tuple[str, ...] = ()  # kinds of manifest objects, e.g. "ClusterRole"
    dry_run: bool | None = None
    programs: tuple[str, ...] = ()  # globs on the program's base name
    # globs on the program's own command: its first argument (after `--traceback`) when that
    # is no option, as `guardctl creds …` (where `args` would also match `guardctl get creds`)
    subcommands: tuple[str, ...] = ()
    args: tuple[str, ...] = ()  # globs on any argument word
    env: tuple[str, ...] = ()  # globs on assignment names (NAME=value prefixes)
    writes: tuple[str, ...] = ()  # globs on redirect targets
    # globs on any word: arguments, assignment values, redirects, a here-document's text
    mentions: tuple[str, ...] = ()
    understood: bool | None = None
    source: str = ""  # the pattern or mapping as written, for `rules explain`
    # derived by `Match.of` (every Match is built through it), read for each rule and line:
    # the match keys this alternative sets, in declaration order (cheap checks first)
    keys: tuple[str, ...] = ()
    kubectl_only: bool = False

    @classmethod
    def of(cls, **values: Any) -> "Match":
        keys = tuple(k for k in cls._fields if k in MATCH_KEYS and values.get(k) not in ((), None))
        return cls(**values, keys=keys, kubectl_only=any(k in KUBECTL_KEYS for k in keys))

    def written(self) -> dict[str, Any]:
        """The fields as written in a rules file, without the derived ones."""
        return {k: v for k, v in self._asdict().items() if k not in _DERIVED}


class Rule(NamedTuple):
    id: str
    action: Action
    reason: str
    match: tuple[Match, ...]
    unless: tuple[Match, ...] = ()
    origin: str = ""  # "file:line" where the rule starts
    description: str = ""
    disabled: bool = False  # a later file switching off a rule of the same id
    # derived by `Rule.of`, which every Rule is built through; they let the policy skip a
    # rule for a call it cannot match without evaluating it (many rules, many lines):
    # first words of the verbs every alternative requires, None when one requires none
    verb_heads: frozenset[str] | None = None
    # per alternative, the flags it requires set; None when one requires no flag
    flag_needs: tuple[frozenset[str], ...] | None = None
    kubectl_only: bool = False

    @classmethod
    def of(cls, **values: Any) -> "Rule":
        match: tuple[Match, ...] = values["match"]
        return cls(
            **values,
            verb_heads=_verb_heads(match),
            flag_needs=_flag_needs(match),
            kubectl_only=all(alternative.kubectl_only for alternative in match),
        )


_DERIVED = frozenset({"keys", "kubectl_only", "verb_heads", "flag_needs"})


def _flag_needs(match: tuple[Match, ...]) -> tuple[frozenset[str], ...] | None:
    if not all(alternative.flags for alternative in match):
        return None
    return tuple(frozenset(f.name for f in alternative.flags) for alternative in match)


def _verb_heads(match: tuple[Match, ...]) -> frozenset[str] | None:
    heads: set[str] = set()
    for alternative in match:
        if not alternative.verbs:
            return None
        heads.update(verb[0] for verb in alternative.verbs if verb)
    return frozenset(heads)


class RuleSet(NamedTuple):
    rules: tuple[Rule, ...]
    files: tuple[str, ...] = ()


# --------------------------------------------------------------------------- YAML reading


@cache
def _line_loader() -> Any:
    """A safe loader that remembers the line each mapping starts on (for error messages).

    Built on first use: yaml is imported only when a rules file must be parsed (a cached
    rule set needs no yaml), and libyaml's loader is about ten times faster.
    """
    import yaml

    class LineLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
        pass

    def construct_mapping(loader: Any, node: Any) -> dict[str, Any]:
        mapping: dict[str, Any] = loader.construct_mapping(node, deep=True)
        mapping["__line__"] = node.start_mark.line + 1
        return mapping

    LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return LineLoader


def _load_yaml(text: str, origin: str) -> Any:
    import yaml

    try:
        return yaml.load(text, Loader=_line_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{origin}:{mark.line + 1}" if mark is not None else origin
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RuleError(f"{where}: not valid YAML: {problem}") from None


# --------------------------------------------------------------------------- parsing rules


def parse_rules(text: str, origin: str = "<rules>") -> tuple[Rule, ...]:
    """Parse one rules file's text. Raises RuleError naming origin, line, rule id and key."""
    doc = _load_yaml(text, origin)
    if doc is None:
        return ()
    if not isinstance(doc, dict) or set(doc) - {"rules", "__line__", "version"}:
        raise RuleError(f"{origin}: a rules file is a mapping with a 'rules:' list")
    items = doc.get("rules") or []
    if not isinstance(items, list):
        raise RuleError(f"{origin}: 'rules' must be a list")
    rules = [_parse_rule(item, origin, index) for index, item in enumerate(items, 1)]
    _check_unique_ids(rules, origin)
    return tuple(rules)


def _check_unique_ids(rules: Sequence[Rule], origin: str) -> None:
    seen: dict[str, str] = {}
    for rule in rules:
        if rule.id in seen:
            raise RuleError(
                f"{rule.origin}: rule id '{rule.id}' is already used at {seen[rule.id]}"
            )
        seen[rule.id] = rule.origin


def _parse_rule(item: Any, origin: str, index: int) -> Rule:
    if not isinstance(item, dict):
        raise RuleError(f"{origin}: rule #{index} must be a mapping")
    where = f"{origin}:{item.get('__line__', '?')}"
    rule_id = item.get("id")
    if not isinstance(rule_id, str) or not rule_id.strip():
        raise RuleError(f"{where}: rule #{index} needs an 'id' (a non-empty string)")
    label = f"{where}: rule '{rule_id}'"
    unknown = set(item) - RULE_KEYS - {"__line__"}
    if unknown:
        raise RuleError(f"{label}: unknown key '{sorted(unknown)[0]}' (known: {_known(RULE_KEYS)})")
    if "disabled" in item and not isinstance(item["disabled"], bool):
        raise RuleError(f"{label}: 'disabled' must be true or false")
    if item.get("disabled") is True:
        # switching off a rule defined in an earlier file needs nothing but its id
        return Rule.of(
            id=rule_id, action=Action.ALLOW, reason="", match=(), origin=where, disabled=True
        )
    action = item.get("action")
    try:
        action_value = Action(action)
    except ValueError:
        raise RuleError(
            f"{label}: 'action' must be allow, approve or deny, not {action!r}"
        ) from None
    reason = item.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise RuleError(f"{label}: needs a 'reason' (one sentence a human and the agent will read)")
    if "match" not in item:
        raise RuleError(f"{label}: needs a 'match'")
    return Rule.of(
        id=rule_id,
        action=action_value,
        reason=" ".join(reason.split()),
        match=_parse_alternatives(item["match"], f"{label}: 'match'"),
        unless=_parse_alternatives(item["unless"], f"{label}: 'unless'")
        if "unless" in item
        else (),
        origin=where,
        description=str(item.get("description", "")),
    )


def _known(keys: Iterable[str]) -> str:
    return ", ".join(sorted(keys))


def _parse_alternatives(value: Any, label: str) -> tuple[Match, ...]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise RuleError(f"{label}: must not be empty")
    return tuple(_parse_match(item, label) for item in items)


def _parse_match(value: Any, label: str) -> Match:
    if isinstance(value, str):
        return parse_pattern(value, label)
    if isinstance(value, dict):
        return _parse_mapping(value, label)
    raise RuleError(f"{label}: must be a pattern string or a mapping, not {type(value).__name__}")


def parse_pattern(pattern: str, label: str = "pattern") -> Match:
    """The short form: kubectl words, read by the same normalizer as real commands.

    `"delete namespace"` -> verbs delete, resources namespaces; `"get secrets -o yaml"` adds
    the flag condition output=yaml. Flags given without a value only need to be present.
    """
    from guardctl.firewall.normalize import normalize
    from guardctl.model import SimpleCommand

    try:
        words = shlex.split(pattern)
    except ValueError as exc:
        raise RuleError(f"{label}: cannot split pattern {pattern!r}: {exc}") from None
    if not words:
        raise RuleError(f"{label}: empty pattern")
    call = normalize(SimpleCommand(argv=("kubectl", *words)))
    if not call.verb:
        raise RuleError(f"{label}: pattern {pattern!r} names no kubectl command")
    resources = []
    # only types the pattern names: `"exec"` must not pick up exec's default type (pods)
    for ref in call.resources if call.args else ():
        if not ref.kind:
            raise RuleError(f"{label}: pattern {pattern!r}: unknown resource type '{ref.resource}'")
        resources.append(ref.qualified)
    flags = tuple(_pattern_flag(name, values) for name, values in call.flags.items())
    return Match.of(
        verbs=(tuple(call.verb.split()),),
        resources=tuple(resources),
        flags=flags,
        source=pattern,
    )


def _pattern_flag(name: str, values: tuple[str, ...]) -> FlagCondition:
    meaningful = tuple(v for v in values if v != "true")
    return FlagCondition(name=name, values_in=meaningful)


def _strings(value: Any, label: str) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(i, (str, int)) and not isinstance(i, bool) for i in items):
        raise RuleError(f"{label}: must be a string or a non-empty list of strings")
    return tuple(str(i) for i in items)


def _at_line(label: str, line: object) -> str:
    """`label` ("file:LINE: rule 'x': ...") pointing at `line`, where a nested mapping starts."""
    head, sep, rest = label.partition(": ")
    origin = head.rsplit(":", 1)[0]
    return f"{origin}:{line}{sep}{rest}" if isinstance(line, int) else label


def _parse_mapping(value: dict[str, Any], label: str) -> Match:
    label = _at_line(label, value.get("__line__"))
    keys = set(value) - {"__line__"}
    unknown = keys - MATCH_KEYS
    if unknown:
        raise RuleError(
            f"{label}: unknown key '{sorted(unknown)[0]}' (known: {_known(MATCH_KEYS)})"
        )
    if not keys:
        raise RuleError(f"{label}: an empty mapping would match everything; say what to match")
    fields: dict[str, Any] = {"source": _describe_mapping(value)}
    for key in sorted(keys):
        item = value[key]
        key_label = f"{label}: '{key}'"
        if key in ("dry_run", "understood"):
            if not isinstance(item, bool):
                raise RuleError(f"{key_label}: must be true or false")
            fields[key] = item
        elif key == "verbs":
            fields[key] = tuple(tuple(v.split()) for v in _strings(item, key_label))
        elif key == "resources":
            fields[key] = tuple(_resolve_resource(r, key_label) for r in _strings(item, key_label))
        elif key == "risks":
            fields[key] = tuple(_check_risk(r, key_label) for r in _strings(item, key_label))
        elif key == "flags":
            fields[key] = _parse_flags(item, key_label)
        else:
            fields[key] = _strings(item, key_label)
    return Match.of(**fields)


def _describe_mapping(value: dict[str, Any]) -> str:
    parts = []
    for key, item in value.items():
        if key != "__line__":
            parts.append(f"{key}={_plain(item)}")
    return " ".join(parts)


def _plain(item: Any) -> str:
    if isinstance(item, list):
        return "[" + ",".join(_plain(i) for i in item) + "]"
    if isinstance(item, dict):
        return "{" + ",".join(f"{k}:{_plain(v)}" for k, v in item.items() if k != "__line__") + "}"
    return str(item)


def _resolve_resource(word: str, label: str) -> str:
    if word == "*":
        return word
    from guardctl.firewall.resources import lookup

    name, _, sub = word.partition("/")
    info = lookup(name)
    if info is None:
        raise RuleError(f"{label}: unknown resource type '{name}'")
    return f"{info.qualified}/{sub}" if sub else info.qualified


def _check_risk(name: str, label: str) -> str:
    from guardctl.firewall.manifests import RISKS

    if name not in RISKS:
        raise RuleError(f"{label}: unknown risk '{name}' (known: {_known(RISKS)})")
    return name


def _parse_flags(value: Any, label: str) -> tuple[FlagCondition, ...]:
    items = value if isinstance(value, list) else [value]
    conditions = []
    for item in items:
        if isinstance(item, str):
            name, eq, glob = item.lstrip("-").partition("=")
            conditions.append(FlagCondition(name=name, values_in=(glob,) if eq else ()))
        elif isinstance(item, dict):
            unknown = set(item) - FLAG_CONDITION_KEYS - {"__line__"}
            if unknown or not isinstance(item.get("name"), str):
                raise RuleError(
                    f"{label}: a flag condition mapping has 'name' and optional "
                    "'in'/'not_in'/'global'"
                )
            if not isinstance(item.get("global", False), bool):
                raise RuleError(f"{label}: 'global' must be true or false")
            conditions.append(
                FlagCondition(
                    name=item["name"].lstrip("-"),
                    values_in=_strings(item["in"], f"{label}: 'in'") if "in" in item else (),
                    values_not_in=(
                        _strings(item["not_in"], f"{label}: 'not_in'") if "not_in" in item else ()
                    ),
                    global_only=item.get("global", False),
                )
            )
        else:
            raise RuleError(f"{label}: each flag is 'name', 'name=glob' or a mapping")
    return tuple(conditions)


# --------------------------------------------------------------------------- finding files


def rule_files(paths: Iterable[str | Path]) -> list[Path]:
    """Expand folders into their *.yaml files (sorted); skip the secret detectors file."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            found.extend(p for p in sorted(path.glob("*.y*ml")) if p.name not in NOT_POLICY_FILES)
        elif path.exists():
            found.append(path)
        else:
            raise RuleError(
                f"{path}: no such rules file or folder (check --rules / GUARDCTL_RULES)"
            )
    return found


# files in a rules folder that are not policy (the masking detectors live beside the rules)
NOT_POLICY_FILES = frozenset({"secrets.yaml"})


def load_rules(paths: Sequence[str | Path], cache_dir: Path | None = None) -> RuleSet:
    """Load rules from files and folders in order; a later rule replaces an earlier same id.

    With `cache_dir`, a rule set parsed before from the same files is read back from a JSON
    cache there (`stampcache`) instead of parsing YAML again: every agent command loads the
    policy, and parsing it costs more than deciding a line.
    """
    files = rule_files(paths)
    entry = stampcache.entry(cache_dir, _CACHE_PREFIX, files) if cache_dir is not None else None
    if entry is None:
        return _parse_files(files)
    built = _BUILT.get(entry)
    if built is not None:
        return built
    ruleset = _ruleset_from(entry.read())
    if ruleset is None:
        ruleset = _parse_files(files)
        entry.write({"rules": [_rule_doc(r) for r in ruleset.rules], "files": list(ruleset.files)})
    _BUILT.put(entry, ruleset)
    return ruleset


def _parse_files(files: Sequence[Path]) -> RuleSet:
    by_id: dict[str, Rule] = {}
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RuleError(f"{path}: cannot read rules file: {exc}") from None
        for rule in parse_rules(text, str(path)):
            by_id.pop(rule.id, None)  # re-insert so that order follows the newest definition
            by_id[rule.id] = rule
    rules = tuple(r for r in by_id.values() if not r.disabled)
    return RuleSet(rules=rules, files=tuple(str(p) for p in files))


# --------------------------------------------------------------------------- the rule cache

_CACHE_PREFIX = "rules"
# rule sets this process built, by the stamps of their files: the fork server loads the
# policy once and its workers, forked from it, find it here
_BUILT: stampcache.Built[RuleSet] = stampcache.Built()


def _ruleset_from(doc: Any) -> RuleSet | None:
    """The cached rule set, or None when there is none or it does not read back."""
    if doc is None:
        return None
    try:
        return RuleSet(rules=tuple(_rule_from(r) for r in doc["rules"]), files=tuple(doc["files"]))
    except (ValueError, KeyError, TypeError):
        return None


def _rule_doc(rule: Rule) -> dict[str, Any]:
    """A rule as JSON-ready data: records become mappings, derived fields are left out."""

    def match_doc(m: Match) -> dict[str, Any]:
        # the keys an alternative sets only: a team's thousand rules read back faster
        doc = {k: v for k, v in m.written().items() if v not in ((), None)}
        if m.flags:
            doc["flags"] = [f._asdict() for f in m.flags]
        return doc

    doc = {k: v for k, v in rule._asdict().items() if k not in _DERIVED}
    return {
        **doc,
        "match": [match_doc(m) for m in rule.match],
        "unless": [match_doc(m) for m in rule.unless],
    }


def _rule_from(doc: dict[str, Any]) -> Rule:
    return Rule.of(
        id=doc["id"],
        action=Action(doc["action"]),
        reason=doc["reason"],
        match=tuple(_match_from(m) for m in doc["match"]),
        unless=tuple(_match_from(m) for m in doc["unless"]),
        origin=doc["origin"],
        description=doc["description"],
        disabled=doc["disabled"],
    )


def _match_from(doc: dict[str, Any]) -> Match:
    values: dict[str, Any] = {}
    for name, value in doc.items():
        if name == "verbs":
            values[name] = tuple(tuple(v) for v in value)
        elif name == "flags":
            values[name] = tuple(
                FlagCondition(
                    name=f["name"],
                    values_in=tuple(f["values_in"]),
                    values_not_in=tuple(f["values_not_in"]),
                    global_only=f["global_only"],
                )
                for f in value
            )
        else:
            values[name] = tuple(value) if isinstance(value, list) else value
    return Match.of(**values)
