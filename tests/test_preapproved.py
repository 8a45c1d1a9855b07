"""One-time grants for commands a human approved as part of a whole line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from guardctl.approvals import grants
from guardctl.approvals.grants import Approved, consume, grant, revoke
from guardctl.env import Environment
from guardctl.model import Action, CommandDecision, Decision, RuleHit

SECRET = ("get", "secret", "app-secrets", "-n", "dev", "-o", "yaml")
APPROVED = Approved(argv=SECRET, rule_ids=frozenset({"read-secret-values"}))


@pytest.fixture
def env() -> Environment:
    return Environment(environ=dict(os.environ))


@pytest.mark.parametrize(
    ("argv", "rules", "expected"),
    [
        (SECRET, ["read-secret-values"], True),
        (SECRET, ("read-secret-values", "read-secret-values"), True),  # ids compare as a set
        (SECRET, [], False),
        (SECRET, ["read-secret-values", "exec-into-container"], False),
        ((*SECRET, "--show-managed-fields"), ["read-secret-values"], False),
        (("get", "secret", "other", "-n", "dev", "-o", "yaml"), ["read-secret-values"], False),
    ],
)
def test_consume_matches_argv_and_rule_ids(
    env: Environment, argv: tuple[str, ...], rules: list[str], expected: bool
) -> None:
    token = grant(env, [APPROVED])
    assert consume(env, token, argv, rules) is expected


def test_each_entry_is_used_once(env: Environment) -> None:
    token = grant(env, [APPROVED, APPROVED])
    results = [consume(env, token, SECRET, ["read-secret-values"]) for _ in range(3)]
    assert results == [True, True, False]


@pytest.mark.parametrize("token", ["", "0" * 64, "x" * 10_000])
def test_forged_tokens_grant_nothing(env: Environment, token: str) -> None:
    grant(env, [APPROVED])
    assert not consume(env, token, SECRET, ["read-secret-values"])


def test_revoked_and_expired_grants_grant_nothing(env: Environment) -> None:
    revoked = grant(env, [APPROVED])
    revoke(env, revoked)
    assert not consume(env, revoked, SECRET, ["read-secret-values"])
    expired = grant(env, [APPROVED], ttl=10, now=1000.0)
    assert not consume(env, expired, SECRET, ["read-secret-values"], now=1010.0)
    assert consume(env, expired, SECRET, ["read-secret-values"], now=1009.0)


def test_grant_files_are_private_and_stale_ones_swept(env: Environment) -> None:
    old = grant(env, [APPROVED], ttl=1, now=0.0)
    folder = env.state_dir / grants.FOLDER
    assert len(list(folder.iterdir())) == 1
    fresh = grant(env, [APPROVED])  # sweeps the expired grant
    files = list(folder.iterdir())
    assert len(files) == 1 and (files[0].stat().st_mode & 0o777) == 0o600
    assert (folder.stat().st_mode & 0o777) == 0o700
    assert not consume(env, old, SECRET, ["read-secret-values"])
    assert consume(env, fresh, SECRET, ["read-secret-values"])


def test_a_corrupt_grant_grants_nothing(env: Environment) -> None:
    token = grant(env, [APPROVED])
    (path,) = (env.state_dir / grants.FOLDER).iterdir()
    Path(path).write_text('{"entries": "all"}')
    assert not consume(env, token, SECRET, ["read-secret-values"])


def _decision(action: Action, ids: tuple[str, ...]) -> Decision:
    hits = tuple(RuleHit(id=i, action=action, reason="r") for i in ids)
    return Decision(action, "r", (CommandDecision(("kubectl", *SECRET), action, hits),))


@pytest.mark.parametrize(
    ("decision", "expected"),
    [
        (_decision(Action.APPROVE, ("read-secret-values",)), True),
        (_decision(Action.APPROVE, ("exec-into-container",)), False),
        (_decision(Action.DENY, ("read-secret-values",)), False),  # a grant never beats a deny
    ],
)
def test_consume_for_reads_the_token_from_the_environment(
    env: Environment, decision: Decision, expected: bool
) -> None:
    token = grant(env, [APPROVED])
    child = Environment(environ={**env.environ, grants.TOKEN_VARIABLE: token})
    assert grants.consume_for(child, SECRET, decision) is expected
    assert not grants.consume_for(env, SECRET, decision)  # no token in the environment
