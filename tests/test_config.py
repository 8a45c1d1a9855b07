"""guardctl's config file: round trip, permissions, and errors that name the file and key."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from guardctl import config, runtime
from guardctl.config import Config, Contexts, load_config, load_contexts, save_config, ttl_seconds
from guardctl.errors import UsageError

CONFIG = Config.of(
    context="dev", cluster="dev-cluster", user="admin", server="https://127.0.0.1:6443",
    certificate_authority_data="LS0tLS1CRUdJTg==", namespace="dev",
    service_account="guardctl/guardctl-agent", credential="token", token_ttl="30m",
)
GOOD = """\
context: dev
cluster: dev-cluster
user: admin
server: https://127.0.0.1:6443
certificate-authority-data: ''
namespace: ''
service-account: guardctl/guardctl-agent
credential: exec
"""


def test_round_trip_with_private_permissions(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "guardctl" / "config.yaml"
    save_config(path, CONFIG)
    assert load_config(path) == CONFIG
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["config.yaml"]  # no temp file left


def test_save_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    save_config(path, CONFIG)
    changed = CONFIG._replace(namespace="prod")
    save_config(path, changed)
    assert load_config(path) == changed


def test_a_broker_line_beside_the_credentials_loads_and_is_kept(tmp_path: Path) -> None:
    # the README's `broker: PATH` in the same file the broker's own account keeps its
    # credentials in: its workers load that file, and `creds import` rewrites it
    path = tmp_path / "config.yaml"
    path.write_text(GOOD + "broker: /run/guardctl/broker.sock\n")
    config = load_config(path)
    assert config is not None and config.broker == "/run/guardctl/broker.sock"
    save_config(path, config)
    assert load_config(path) == config
    assert runtime.broker_path({"GUARDCTL_CONFIG": str(path)}) == "/run/guardctl/broker.sock"


def test_no_broker_writes_no_broker_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    save_config(path, CONFIG)
    assert "broker" not in path.read_text()
    assert runtime.broker_path({"GUARDCTL_CONFIG": str(path)}) is None


def test_absent_file_is_none(tmp_path: Path) -> None:
    assert load_config(tmp_path / "nothing.yaml") is None


def test_defaults_apply(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(GOOD)
    config = load_config(path)
    assert config is not None
    assert (config.token_ttl, config.keyring_service) == ("1h", "guardctl")
    assert (config.sa_namespace, config.sa_name, config.ttl_seconds) == (
        "guardctl", "guardctl-agent", 3600)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("context: [unclosed", "not valid YAML"),
        ("- a list", "expected a mapping"),
        (GOOD + "token: abc\n", "unknown key 'token'"),
        (GOOD.replace("server: https://127.0.0.1:6443\n", ""), "missing key 'server'"),
        (GOOD.replace("namespace: ''", "namespace: 3"), "key 'namespace' must be a string"),
        (GOOD.replace("guardctl/guardctl-agent", "agent"), "not NAMESPACE/NAME"),
        (GOOD + "token-ttl: 5m\n", "shorter than the API server's minimum"),
        (GOOD.replace("credential: exec", "credential: password"), "credential kind 'password'"),
    ],
)
def test_bad_files_name_file_and_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(UsageError, match=message) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ")


@pytest.mark.parametrize(
    ("ttl", "seconds"),
    [("1h", 3600), ("10m", 600), ("90m", 5400), ("1h30m", 5400), ("3600s", 3600), ("2h0m1s", 7201)],
)
def test_ttl_seconds(ttl: str, seconds: int) -> None:
    assert ttl_seconds(ttl) == seconds


@pytest.mark.parametrize("ttl", ["", "1d", "h", "60", "-1h", "1.5h", "9m59s", "1m"])
def test_bad_ttl(ttl: str) -> None:
    with pytest.raises(UsageError):
        ttl_seconds(ttl)


# --------------------------------------------------------------------------- the JSON copy


def _copies(cache: Path) -> list[Path]:
    return sorted(cache.glob("config-*.json")) if cache.exists() else []


def test_a_run_reads_the_json_copy(tmp_path: Path) -> None:
    path, cache = tmp_path / "config.yaml", tmp_path / "cache"
    save_config(path, CONFIG)
    assert load_config(path, cache) == CONFIG
    [copy] = _copies(cache)
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    # the copy, not the YAML, is what the next load reads
    doc = json.loads(copy.read_text())
    doc["data"]["namespace"] = "from-copy"
    copy.write_text(json.dumps(doc))
    assert load_config(path, cache) == CONFIG  # this process built it already: no read
    config._BUILT.clear()  # as in the next run
    loaded = load_config(path, cache)
    assert loaded is not None and loaded.namespace == "from-copy"


def test_a_process_builds_the_contexts_once_while_the_file_is_unchanged(tmp_path: Path) -> None:
    path, cache = tmp_path / "config.yaml", tmp_path / "cache"
    save_config(path, CONFIG)
    first = load_contexts(path, cache)
    for copy in _copies(cache):
        copy.unlink()
    assert load_contexts(path, cache) is first
    save_config(path, CONFIG._replace(namespace="edited"))
    edited = load_config(path, cache)
    assert edited is not None and edited.namespace == "edited"


@pytest.mark.parametrize("edit", ["save", "append", "touch"])
def test_a_changed_file_is_read_again(tmp_path: Path, edit: str) -> None:
    path, cache = tmp_path / "config.yaml", tmp_path / "cache"
    save_config(path, CONFIG)
    load_config(path, cache)
    if edit == "save":  # a new file renamed over the old one
        expected = CONFIG._replace(namespace="prod")
        save_config(path, expected)
    elif edit == "append":  # an edit in place
        expected = CONFIG
        path.write_text(path.read_text() + "# edited\n")
    else:  # an edit in place that keeps the size: only the modification time tells
        expected = CONFIG._replace(namespace="prd")
        info = path.stat()
        path.write_text(path.read_text().replace("namespace: dev", "namespace: prd"))
        os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 1))
    assert load_config(path, cache) == expected
    assert len(_copies(cache)) == 2  # read and copied again


def test_a_damaged_copy_is_ignored(tmp_path: Path) -> None:
    path, cache = tmp_path / "config.yaml", tmp_path / "cache"
    save_config(path, CONFIG)
    load_config(path, cache)
    [copy] = _copies(cache)
    stamps = json.loads(copy.read_text())["stamps"]
    damaged = [json.dumps({"stamps": stamps, "data": data}) for data in ({"token": "x"}, [])]
    for damage in ("{not json", *damaged):
        copy.write_text(damage)
        assert load_config(path, cache) == CONFIG


def test_bad_files_are_not_copied(tmp_path: Path) -> None:
    path, cache = tmp_path / "config.yaml", tmp_path / "cache"
    path.write_text(GOOD + "token: abc\n")
    with pytest.raises(UsageError, match="unknown key 'token'"):
        load_config(path, cache)
    assert _copies(cache) == []
    assert load_config(tmp_path / "absent.yaml", cache) is None


def test_an_unwritable_cache_only_costs_speed(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    save_config(path, CONFIG)
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder would be")
    assert load_config(path, blocker) == CONFIG


# ------------------------------------------------------------------ several contexts

STAGING = CONFIG._replace(
    context="staging", cluster="staging-cluster", server="https://10.0.0.9:6443",
    service_account="agents/reader",
)


def test_several_contexts_round_trip_and_share_the_file_settings(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    held = Contexts(CONFIG._replace(broker="/run/b.sock", keyring_service="team"), (STAGING,))
    save_config(path, held)
    loaded = load_contexts(path)
    assert loaded is not None and loaded.names == ("dev", "staging")
    # the second context takes the file's keyring service and broker
    assert loaded.named("staging") == STAGING._replace(broker="/run/b.sock", keyring_service="team")
    assert loaded.named(None) == loaded.default == load_config(path)
    assert loaded.named("prod") is None
    listed = path.read_text().split("contexts:")[1]
    assert "broker" not in listed and "keyring-service" not in listed


def test_with_context_replaces_by_name_or_adds(tmp_path: Path) -> None:
    held = Contexts(CONFIG)
    added = held.with_context(STAGING)
    assert added.names == ("dev", "staging")
    moved = STAGING._replace(namespace="ops")
    assert added.with_context(moved).others == (moved,)
    assert added.with_context(CONFIG._replace(token_ttl="2h")).default.token_ttl == "2h"


@pytest.mark.parametrize(
    ("listed", "message"),
    [
        ("contexts: dev\n", "'contexts' must be a list of contexts"),
        ("contexts: [{context: x}]\n", "contexts[0]: missing key 'cluster'"),
        ("contexts:\n- " + GOOD.replace("\n", "\n  ").rstrip() + "\n", "'dev' is listed twice"),
        (
            "contexts:\n- " + GOOD.replace("context: dev", "context: b").replace("\n", "\n  ")
            + "keyring-service: other\n",
            "contexts[0]: unknown key 'keyring-service'",
        ),
    ],
)
def test_a_bad_context_list_names_the_problem(tmp_path: Path, listed: str, message: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(GOOD + listed)
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_contexts(path)


def test_a_file_with_only_the_broker_holds_no_context(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("broker: /run/guardctl/broker.sock\n")
    assert load_contexts(path) is None


def test_the_policy_context_follows_the_config_and_the_variables(tmp_path: Path) -> None:
    # a warm worker keeps the last context it made; an edit or another variable makes anew
    from guardctl.env import Environment

    path = tmp_path / "config.yaml"
    save_config(path, CONFIG)
    environ = {"GUARDCTL_CONFIG": str(path), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env = Environment(environ=environ, home=tmp_path)
    first = env.policy_context()
    assert "127.0.0.1:6443" in first.cluster_hosts
    assert Environment(environ=dict(environ), home=tmp_path).policy_context() is first
    save_config(path, CONFIG._replace(server="https://10.9.8.7:6443"))
    assert "10.9.8.7:6443" in env.policy_context().cluster_hosts
    rules = tmp_path / "more-rules"
    widened = Environment(environ={**environ, "GUARDCTL_RULES": str(rules)}, home=tmp_path)
    assert str(rules) in widened.policy_context().protected_paths
    assert str(rules) not in Environment(environ=environ, home=tmp_path / "other").policy_context(
    ).protected_paths
