"""The rule loader: schema errors name file, line, rule id and key; overrides by id."""

from __future__ import annotations

from pathlib import Path

import pytest

from guardctl import stampcache
from guardctl.bundled import bundled_rules_dir
from guardctl.errors import RuleError
from guardctl.firewall import rules
from guardctl.firewall.rules import load_rules, parse_pattern, parse_rules, rule_files
from guardctl.model import Action

GOOD = """
rules:
  - id: no-exec
    action: approve
    reason: Exec opens a shell.
    match: "exec"
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules: [", "not valid YAML: did not find expected node content"),
        ("rules:\n  - id: a\n    action: deny\n  reason: r", "x.yaml:4: not valid YAML"),
        ("- id: a", "a rules file is a mapping with a 'rules:' list"),
        ("rules: {id: a}", "'rules' must be a list"),
        (
            "rules:\n  - action: deny\n    reason: r\n    match: drain",
            "x.yaml:2: rule #1 needs an 'id'",
        ),
        (
            "rules:\n  - id: a\n    action: block\n    reason: r\n    match: drain",
            "rule 'a': 'action' must be allow, approve or deny, not 'block'",
        ),
        ("rules:\n  - id: a\n    action: deny\n    match: drain", "rule 'a': needs a 'reason'"),
        ("rules:\n  - id: a\n    action: deny\n    reason: r", "rule 'a': needs a 'match'"),
        (
            "rules:\n  - id: a\n    action: deny\n    reason: r\n    match: drain\n    mtach: x",
            "rule 'a': unknown key 'mtach'",
        ),
        (
            "rules:\n  - id: a\n    action: deny\n    reason: r\n    match: {verb: [delete]}",
            "rule 'a': 'match': unknown key 'verb'",
        ),
        (
            "rules:\n  - id: a\n    action: deny\n    reason: r\n    match: {resources: [nopes]}",
            "unknown resource type 'nopes'",
        ),
        (
            "rules:\n  - id: a\n    action: deny\n    reason: r\n    match: {risks: [scary]}",
            "unknown risk 'scary'",
        ),
        ("rules:\n  - id: a\n    action: deny\n    reason: r\n    match: {}", "an empty mapping"),
        (
            "rules:\n  - id: a\n    action: deny\n    reason: r\n    match: {dry_run: maybe}",
            "'dry_run': must be true or false",
        ),
        (
            "rules:\n  - id: a\n    action: deny\n    reason: r\n    match: 'get pods \"'",
            "cannot split pattern",
        ),
        (
            "rules:\n  - id: a\n    action: deny\n    reason: r\n    match: 'get frobs'",
            "unknown resource type",
        ),
        (
            "rules:\n  - id: a\n    action: deny\n    reason: r\n    match: drain\n"
            "  - id: a\n    action: deny\n    reason: r\n    match: drain",
            "rule id 'a' is already used",
        ),
        (
            "rules:\n  - id: a\n    action: deny\n    reason: r\n    match: 7",
            "must be a pattern string",
        ),
        (
            "rules:\n  - id: a\n    action: deny\n    reason: r\n    match: {flags: [{nam: x}]}",
            "a flag condition mapping",
        ),
    ],
)
def test_broken_rules_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(RuleError) as info:
        parse_rules(text, "x.yaml")
    assert message in str(info.value)
    assert str(info.value).startswith("x.yaml")


@pytest.mark.parametrize(
    ("pattern", "verbs", "resources", "flags"),
    [
        ("delete namespace", (("delete",),), ("namespaces",), {}),
        ("delete ns", (("delete",),), ("namespaces",), {}),
        ("get secrets -o yaml", (("get",),), ("secrets",), {"output": ("yaml",)}),
        ("get secret --output=yaml", (("get",),), ("secrets",), {"output": ("yaml",)}),
        ("rollout restart deploy", (("rollout", "restart"),), ("deployments.apps",), {}),
        ("config view --raw", (("config", "view"),), (), {"raw": ()}),
        ("create token", (("create", "token"),), (), {}),
    ],
)
def test_short_patterns_read_like_commands(
    pattern: str,
    verbs: tuple[tuple[str, ...], ...],
    resources: tuple[str, ...],
    flags: dict[str, tuple[str, ...]],
) -> None:
    match = parse_pattern(pattern)
    assert match.verbs == verbs
    assert match.resources == resources
    assert {f.name: f.values_in for f in match.flags} == flags


def test_bundled_policy_loads() -> None:
    ruleset = load_rules([bundled_rules_dir()])
    ids = {r.id for r in ruleset.rules}
    assert {
        "delete-namespace",
        "exec-into-container",
        "read-secret-values",
        "self-protect-writes",
    } <= ids
    assert all(r.reason for r in ruleset.rules)


def test_later_file_replaces_and_disables_by_id(tmp_path: Path) -> None:
    user = tmp_path / "mine.yaml"
    user.write_text(
        "rules:\n"
        "  - id: exec-into-container\n    action: deny\n"
        "    reason: No exec here.\n    match: exec\n"
        "  - id: copy-files\n    disabled: true\n"
    )
    ruleset = load_rules([bundled_rules_dir(), user])
    by_id = {r.id: r for r in ruleset.rules}
    assert by_id["exec-into-container"].action is Action.DENY
    assert by_id["exec-into-container"].origin.startswith(str(user))
    assert "copy-files" not in by_id


def test_missing_rules_path_is_a_rule_error(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match="no such rules file"):
        load_rules([tmp_path / "nope.yaml"])


def test_folder_skips_the_secret_detectors(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "secrets.yaml").write_text("detectors: []\n")
    assert [r.id for r in load_rules([tmp_path]).rules] == ["no-exec"]


@pytest.fixture
def no_built_rule_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rule sets this test process built before are forgotten: the disk cache is tested."""
    monkeypatch.setattr(rules, "_BUILT", stampcache.Built())


def test_a_rule_set_is_built_once_per_process_until_a_file_changes(
    tmp_path: Path, no_built_rule_sets: None
) -> None:
    # what the fork server's workers rely on: the policy it loaded is theirs, unless edited
    user = tmp_path / "mine.yaml"
    user.write_text(GOOD)
    first = load_rules([bundled_rules_dir(), user], cache_dir=tmp_path / "cache")
    again = load_rules([bundled_rules_dir(), user], cache_dir=tmp_path / "elsewhere")
    assert again is first
    user.write_text(GOOD.replace("action: approve", "action: deny"))
    edited = load_rules([bundled_rules_dir(), user], cache_dir=tmp_path / "cache")
    assert edited is not first
    assert {r.id: r.action for r in edited.rules}["no-exec"] is Action.DENY


def test_a_process_keeps_few_rule_sets(tmp_path: Path, no_built_rule_sets: None) -> None:
    for n in range(rules._BUILT.keep + 3):
        user = tmp_path / f"rules-{n}.yaml"
        user.write_text(GOOD)
        load_rules([user], cache_dir=tmp_path / "cache")
    assert len(rules._BUILT) == rules._BUILT.keep


@pytest.mark.usefixtures("no_built_rule_sets")
def test_cached_rule_set_equals_the_parsed_one_and_follows_edits(tmp_path: Path) -> None:
    user = tmp_path / "mine.yaml"
    user.write_text(GOOD)
    cache = tmp_path / "cache"
    parsed = load_rules([bundled_rules_dir(), user], cache_dir=cache)
    assert len(list(cache.glob("rules-*.json"))) == 1
    rules._BUILT.clear()  # read back from the disk cache
    assert load_rules([bundled_rules_dir(), user], cache_dir=cache) == parsed
    assert load_rules([bundled_rules_dir(), user]) == parsed
    # an edited file is parsed again, never served stale from the cache
    user.write_text(GOOD.replace("action: approve", "action: deny  # tightened"))
    edited = load_rules([bundled_rules_dir(), user], cache_dir=cache)
    assert {r.id: r.action for r in edited.rules}["no-exec"] is Action.DENY


@pytest.mark.usefixtures("no_built_rule_sets")
def test_a_broken_cache_is_ignored(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    parsed = load_rules([bundled_rules_dir()], cache_dir=cache)
    for cached in cache.glob("rules-*.json"):
        cached.write_text("{not json")
    rules._BUILT.clear()
    assert load_rules([bundled_rules_dir()], cache_dir=cache) == parsed


@pytest.mark.usefixtures("no_built_rule_sets")
def test_a_cache_file_made_from_other_files_is_never_served(tmp_path: Path) -> None:
    # the cache file name is a short checksum of the stamps: a colliding name (here: the
    # cache of the bundled rules copied over the name another rule set would use) must
    # be parsed again, because the stamps stored inside do not match
    cache = tmp_path / "cache"
    user = tmp_path / "mine.yaml"
    user.write_text(GOOD)
    load_rules([bundled_rules_dir()], cache_dir=cache)
    (bundled_cache,) = cache.glob("rules-*.json")
    entry = stampcache.entry(cache, "rules", rule_files([bundled_rules_dir(), user]))
    assert entry is not None
    bundled_cache.replace(entry.path)
    rules._BUILT.clear()
    loaded = load_rules([bundled_rules_dir(), user], cache_dir=cache)
    assert "no-exec" in {r.id for r in loaded.rules}
    assert loaded == load_rules([bundled_rules_dir(), user])


@pytest.mark.usefixtures("no_built_rule_sets")
def test_a_same_size_edit_with_the_old_mtime_is_parsed_again(tmp_path: Path) -> None:
    # a tool that restores the modification time (cp -p, tar, rsync -t) must not get the
    # old rules back from the cache: the change time still differs
    import os

    user = tmp_path / "mine.yaml"
    user.write_text(GOOD)
    before = user.stat()
    cache = tmp_path / "cache"
    load_rules([bundled_rules_dir(), user], cache_dir=cache)
    user.write_text(GOOD.replace("action: approve", "action: deny   "))
    assert user.stat().st_size == before.st_size
    os.utime(user, ns=(before.st_atime_ns, before.st_mtime_ns))
    edited = load_rules([bundled_rules_dir(), user], cache_dir=cache)
    assert {r.id: r.action for r in edited.rules}["no-exec"] is Action.DENY
