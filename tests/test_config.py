"""guardctl's config file: round trip, permissions, and errors that name the file and key."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import pytest

from guardctl.config import Config, load_config, save_config, ttl_seconds
from guardctl.errors import UsageError

CONFIG = Config(
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
    changed = dataclasses.replace(CONFIG, namespace="prod")
    save_config(path, changed)
    assert load_config(path) == changed


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
