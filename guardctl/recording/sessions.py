"""Listing recorded invocations (`guardctl sessions`): one row per invocation, its "started"
record joined with its completion, oldest first (`sessions`), shown as an aligned table
(`format_sessions`) or JSON Lines (`sessions_json`); and finding the session a person means
(`match_session`) by the id they have at hand.

An invocation whose "started" record has no completion (still running, or killed before
finishing) is listed as incomplete. Rows are built from the log's readable records
(guardctl.recording.verify.records): listing does not verify the log, `guardctl audit
verify` does.
"""

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guardctl.errors import UsageError
from guardctl.recording.audit import COMPLETED, STARTED
from guardctl.recording.verify import records

if TYPE_CHECKING:
    from datetime import datetime


def _row(number: int, record: Mapping[str, Any]) -> dict[str, Any]:
    """An invocation from its "started" record; `agent` is None when no broker ran it for
    an agent."""
    keep = ("time", "session", "user", "agent", "cwd", "line", "argv", "decision", "rules",
            "reason")
    row = {k: record.get(k) for k in keep}
    row.update(
        line_number=number, status="incomplete", exit_code=None, duration=None,
        approver=record.get("approver"), cast=record.get("cast"),
    )
    return row


def _complete(row: dict[str, Any], record: Mapping[str, Any]) -> None:
    row.update(status=COMPLETED, exit_code=record.get("exit_code"))
    row["duration"] = record.get("duration")
    row["approver"] = record.get("approver") or row["approver"]
    row["cast"] = record.get("cast") or row["cast"]


def _since_ok(row: Mapping[str, Any], since: "datetime | None") -> bool:
    if since is None:
        return True
    from datetime import datetime, timezone

    try:
        when = datetime.fromisoformat(str(row["time"]).replace("Z", "+00:00"))
    except ValueError:
        return True  # an unreadable time is shown rather than hidden
    return when >= (since if since.tzinfo else since.replace(tzinfo=timezone.utc))


def sessions(
    path: Path,
    since: "datetime | None" = None,
    decision: str | None = None,
    session: str | None = None,
) -> list[dict[str, Any]]:
    """One row per invocation (started record joined with its completion), oldest first.

    `status` is "completed" or "incomplete" (still running, or killed before finishing).
    `session` is matched as `match_session` does (UsageError when it names no session).
    """
    rows: dict[str, dict[str, Any]] = {}
    for number, record in records(path):
        if record.get("status") == STARTED:
            rows[str(record.get("hash"))] = _row(number, record)
        elif record.get("status") == COMPLETED and str(record.get("started")) in rows:
            _complete(rows[str(record["started"])], record)
    if session is not None:
        session = match_session(session, (str(r["session"]) for r in rows.values()))
    return [
        row for row in rows.values()
        if (decision is None or row["decision"] == decision)
        and (session is None or row["session"] == session)
        and _since_ok(row, since)
    ]


_COLUMNS = ("TIME", "SESSION", "DECISION", "EXIT", "STATUS", "COMMAND")


def _cells(row: Mapping[str, Any]) -> tuple[str, ...]:
    command = row["line"] or " ".join(row["argv"] or [])
    exit_code = "" if row["exit_code"] is None else str(row["exit_code"])
    rules = ",".join(row["rules"] or [])
    verdict = f"{row['decision'] or '?'}" + (f" ({rules})" if rules else "")
    return (str(row["time"]), str(row["session"]), verdict, exit_code, row["status"], command)


def format_sessions(rows: Sequence[Mapping[str, Any]]) -> str:
    """A plain-text table, one line per invocation, columns aligned."""
    table = [_COLUMNS, *(_cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(_COLUMNS) - 1)]
    padded = ("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=False)) for line in table)
    # the command is last and not padded: zip stops at the narrower widths list
    return "\n".join(f"{cells}  {line[-1]}" for cells, line in zip(padded, table, strict=True))


def sessions_json(rows: Sequence[Mapping[str, Any]]) -> str:
    """JSON Lines, one object per invocation."""
    return "\n".join(json.dumps(dict(r), ensure_ascii=False, sort_keys=True) for r in rows)


# the guardctl session of a Claude Code session is `claude-<its id>` (agents.hook)
CLAUDE_PREFIX = "claude-"
# how many candidates an ambiguous id lists
SHOWN_CANDIDATES = 5


def match_session(given: str, known: Iterable[str], missing: str | None = None) -> str:
    """The one recorded session `given` names, among `known`: the id itself, a Claude Code
    session id (recorded as `claude-ID`), or the start of either that only one session has.
    UsageError when none (with `missing` as its message, if given) or several match."""
    ids = set(known)
    for exact in (given, CLAUDE_PREFIX + given):
        if exact in ids:
            return exact
    found = sorted(
        i for i in ids if given and (i.startswith(given) or i.startswith(CLAUDE_PREFIX + given))
    )
    if len(found) == 1:
        return found[0]
    if not found:
        raise UsageError(missing or (
            f"no recorded session {given!r}: give a session id, its first characters, or a "
            "Claude Code session id (`guardctl sessions` lists them)"
        ))
    shown = ", ".join(found[:SHOWN_CANDIDATES]) + (", ..." if len(found) > SHOWN_CANDIDATES else "")
    raise UsageError(f"{given!r} is the start of {len(found)} sessions ({shown}): give more of it")
