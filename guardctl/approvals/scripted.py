"""`guardctl approvals list|approve|deny`: the queue for scripts and other UIs.

The same queue and the same `answer()` as the live view's keys, so the same guarantees: the
first answer is final, a request whose waiter is gone can never be approved, and a window
covers only the request's own (rule, namespace) pairs. Through a broker only the approver
may run these (the worker refuses an agent, as it refuses it the live view).

A request is named by its id as `list` prints it, or by a prefix of it that names exactly
one waiting request (at least MIN_PREFIX characters), as git names commits.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

from guardctl.approvals.queue import (
    GONE,
    MAX_WINDOW_MINUTES,
    AnswerError,
    Queue,
    Request,
    answer,
)
from guardctl.env import Environment
from guardctl.errors import UnsafeError, UsageError
from guardctl.recording.audit import Approver, iso_time
from guardctl.status import ExitStatus

MIN_PREFIX = 4
SHORT_ID = 12
_DURATION = re.compile(r"(?P<number>\d{1,6})(?P<unit>[mh]?)")
GONE_HINT = ("it was answered, timed out or withdrawn, or never was "
             "(`guardctl approvals list` shows those that wait)")


# --------------------------------------------------------------------------- list


def request_json(request: Request, now: float) -> dict[str, Any]:
    """What `list --json` prints of one request: what a human needs to decide, never the
    nonce or command key that tie an answer to it."""
    return {
        "id": request.id,
        "line": request.line,
        "readings": list(request.readings),
        "rules": [{"id": rule, "reason": reason} for rule, reason in request.rules],
        "context": request.context,
        "cluster": request.cluster,
        "namespaces": list(request.namespaces),
        "risks": list(request.risks),
        "problems": list(request.problems),
        "diff": request.diff,
        "manifest": request.manifest,
        "requester": request.requester,
        "created": iso_time(request.created),
        "expires": iso_time(request.expires),
        "waits_seconds": max(0, int(request.expires - now)),
        # a window (`approve --window`) would cover these; empty: it cannot be windowed
        "window_scopes": [{"rule": s.rule, "namespace": s.namespace} for s in request.scopes],
    }


def format_requests(requests: list[Request], now: float) -> str:
    """One line per waiting request: short id, time left, rules, namespaces, who asked (a
    broker's agent) and the command."""
    from guardctl.approvals.prompt import shown

    if not requests:
        return "no requests are waiting"
    lines = []
    for request in requests:
        rules = ",".join(r for r, _ in request.rules) or "not-understood"
        namespaces = ",".join(n or "(context default)" for n in request.namespaces) or "-"
        waits = f"{max(0, int(request.expires - now))}s"
        asker = f"{shown(request.requester)}: " if request.requester else ""
        lines.append(f"{request.id[:SHORT_ID]}  {waits:>5}  {rules}  [{namespaces}]  "
                     f"{asker}{shown(request.line)}")
    return "\n".join(lines)


def list_requests(env: Environment, as_json: bool, clock: Callable[[], float] = time.time) -> int:
    queue = Queue(env.state_dir)
    now = clock()
    queue.sweep(now)
    pending = queue.pending(now)
    if as_json:
        # JSON Lines, one object per request, as `sessions --json`
        for request in pending:
            env.stdout.write(json.dumps(request_json(request, now), ensure_ascii=False) + "\n")
    else:
        env.stdout.write(format_requests(pending, now) + "\n")
    return ExitStatus.OK


# --------------------------------------------------------------------------- answer


def window_minutes(text: str) -> int:
    """`10m`, `2h` or `30` (minutes) as minutes; UsageError for anything else."""
    found = _DURATION.fullmatch(text.strip())
    minutes = int(found["number"]) * (60 if found["unit"] == "h" else 1) if found else 0
    if not 1 <= minutes <= MAX_WINDOW_MINUTES:
        raise UsageError(
            f"--window {text!r}: give minutes or hours, e.g. 10m or 2h, from 1m to "
            f"{MAX_WINDOW_MINUTES // 60}h"
        )
    return minutes


def resolve_id(queue: Queue, given: str, now: float) -> str:
    """The full id of the one waiting request `given` names (its id or a unique prefix)."""
    if not (given.isascii() and given.isalnum()):
        raise UsageError(f"{given!r} is not a request id: `guardctl approvals list` shows them")
    ids = [r.id for r in queue.pending(now)]
    if given in ids:
        return given
    matches = [i for i in ids if i.startswith(given.lower())] if len(given) >= MIN_PREFIX else []
    if len(matches) > 1:
        raise UsageError(f"{given!r} names {len(matches)} waiting requests: give more of the id")
    if matches:
        return matches[0]
    answered = queue.answered(given) if queue.has_request(given) else None
    if answered is not None:
        raise UnsafeError(f"request {given}: already {answered}: the first answer stands")
    raise UnsafeError(f"no request {given} is waiting: {GONE_HINT}")



def answer_request(
    env: Environment, given: str, *, approved: bool, reason: str = "",
    window: str | None = None, clock: Callable[[], float] = time.time,
) -> int:
    """`approve`/`deny` one request; prints what was done. Exit 0, or a one-line error:
    2 for a malformed id or window, 13 when the request cannot be answered (unknown,
    answered already, its waiter gone, or it cannot be windowed)."""
    from guardctl.approvals.prompt import current_user, shown, terminal_name

    minutes = window_minutes(window) if window is not None else None
    if not approved and not reason.strip():
        raise UsageError("deny needs --reason TEXT: the agent is told why")
    queue = Queue(env.state_dir)
    now = clock()
    queue.sweep(now)
    request_id = resolve_id(queue, given, now)
    request = queue.load(request_id)
    tty = terminal_name(env.stdin.fileno()) if _isatty(env) else None
    approver = Approver(user=current_user(env), tty=tty, at=clock())
    try:
        done = answer(env.state_dir, request_id, approved=approved, approver=approver,
                      reason=reason, window_minutes=minutes)
    except AnswerError as exc:
        text = GONE_HINT if str(exc) == GONE else str(exc)
        raise UnsafeError(f"request {request_id[:SHORT_ID]}: {text}") from None
    line = shown(request.line) if request is not None else request_id
    env.stdout.write(f"{done}: {line}\n")
    return ExitStatus.OK


def _isatty(env: Environment) -> bool:
    try:
        return env.stdin.isatty()
    except (AttributeError, ValueError):
        return False
