"""`guardctl sessions --session` and `guardctl replay` take the ids people have at hand
(issue 14): the session id, its first characters, a Claude Code session id (its guardctl
session is `claude-<id>`, agents.hook), and a cast part's name."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from audit_helpers import invoke

from guardctl.agents.hook import SESSION_PREFIX
from guardctl.env import Environment
from guardctl.errors import UsageError
from guardctl.main import main
from guardctl.recording import audit, replay, sessions
from guardctl.status import ExitStatus

CLAUDE = "5f0c9a2e-7b1d-4c3e-9f8a-1d2e3f4a5b6c"
SESSIONS = ["20261207T140000Z-1a2b3c4d", "20261207T150000Z-9e8f7a6b", f"claude-{CLAUDE}"]


@pytest.mark.parametrize(
    ("given", "found"),
    [
        ("20261207T140000Z-1a2b3c4d", "20261207T140000Z-1a2b3c4d"),  # the id itself
        ("20261207T15", "20261207T150000Z-9e8f7a6b"),  # a unique start
        (CLAUDE, f"claude-{CLAUDE}"),  # a Claude Code session id
        (CLAUDE[:8], f"claude-{CLAUDE}"),  # its start
        ("claude-5f0c", f"claude-{CLAUDE}"),
    ],
)
def test_match_session(given: str, found: str) -> None:
    assert sessions.match_session(given, SESSIONS) == found


def test_an_exact_id_wins_over_longer_ones_it_starts() -> None:
    assert sessions.match_session("s1", ["s1", "s10", "s11"]) == "s1"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("2026", r"'2026' is the start of 2 sessions \(20261207T140000Z-1a2b3c4d, "
                 r"20261207T150000Z-9e8f7a6b\): give more of it"),
        ("nope", "no recorded session 'nope'"),
        ("", "no recorded session ''"),
    ],
)
def test_ambiguous_or_unknown_ids_are_usage_errors(given: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        sessions.match_session(given, SESSIONS)


def test_the_hooks_prefix_is_the_one_matched() -> None:
    assert SESSION_PREFIX == sessions.CLAUDE_PREFIX


@pytest.fixture
def recorded(isolated_home: Path) -> Path:
    log = audit.AuditLog(audit.log_path(isolated_home))
    for n, session in enumerate(SESSIONS):
        invoke(isolated_home, log, session, f"output of {n}\r\n".encode())
    return isolated_home


def _json_rows(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    code = main(["sessions", "--json", *args])
    out, err = capsys.readouterr()
    return code, [json.loads(line)["session"] for line in out.splitlines()], err


@pytest.mark.parametrize("given", [CLAUDE, CLAUDE[:6], f"claude-{CLAUDE}"])
def test_sessions_lists_the_session_a_person_names(
    recorded: Path, capsys: pytest.CaptureFixture[str], given: str
) -> None:
    assert _json_rows(capsys, "--session", given)[:2] == (0, [f"claude-{CLAUDE}"])


def test_sessions_says_when_an_id_is_ambiguous(
    recorded: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, rows, err = _json_rows(capsys, "--session", "2026")
    assert (code, rows) == (ExitStatus.USAGE, [])
    assert "is the start of 2 sessions" in err and "Traceback" not in err


def _env(home: Path) -> tuple[Environment, io.StringIO]:
    out = io.StringIO()
    env = Environment(stdin=io.StringIO(), stdout=out, stderr=io.StringIO(),
                      environ={"GUARDCTL_HOME": str(home)}, home=home)
    return env, out


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("20261207T1500", "output of 1"),
        (CLAUDE, "output of 2"),
        (CLAUDE[:4], "output of 2"),
        ("20261207T140000Z-1a2b3c4d.cast", "output of 0"),  # a cast's file name
    ],
)
def test_replay_plays_the_session_a_person_names(recorded: Path, given: str, shown: str) -> None:
    env, out = _env(recorded)
    assert replay.play(given, env, clock=lambda: 0.0, sleep=lambda s: None) == 0
    assert shown in out.getvalue()


def test_replay_of_an_ambiguous_id_is_a_usage_error(recorded: Path) -> None:
    with pytest.raises(UsageError, match="is the start of 2 sessions"):
        replay.play("2026", _env(recorded)[0])
