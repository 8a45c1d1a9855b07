"""The approval queue: requests, answers and windows under `$GUARDCTL_HOME/approvals`.

A request a human must see (`build_request`) is queued as `approvals/requests/<id>.json`;
its waiter (`flow.request_approval`) polls `approvals/answers/<id>.json` until
`GUARDCTL_APPROVAL_TIMEOUT` runs out. The human answers with `guardctl approvals`
(console.py), which calls `answer()`; `w` there also opens a window for the request's
(rule, namespace) pairs.

An answer counts only when it carries the request's random nonce and its command key
(argv, rule ids, namespace, cluster); it is consumed with the request. Neither the nonce
nor any path is shown to the agent.

The first answer is final. Each request file is also its lock (`flock`): an approver checks
that the request is still queued and not answered, and writes its answer, holding it; the
waiter (on an answer, a timeout or a signal) and `sweep()` remove the request holding it.
So of two approvers answering at the same moment, in two windows or two processes, one
writes and the other is refused and told who answered first; an answer that comes after
the waiter gave up finds no request. An answer is never replaced, and stays beside its
request until the waiter takes both away. The agent runs as the same user, so this stops a
confused agent, not a malicious one: default rules deny writes into the state folder and
running `guardctl approvals` (DESIGN.md threat model).

Every file is written to a temp name, fsynced and renamed into place. A waiter withdraws its
request on every exit path (answer, timeout, Ctrl-C, SIGTERM, SIGHUP); one killed outright
leaves a request whose pid is dead, which `sweep()` removes and `answer()` refuses.
"""

import contextlib
import fcntl
import hashlib
import json
import math
import os
import secrets
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from guardctl.atomic import write_atomic
from guardctl.config import load_config
from guardctl.env import Environment
from guardctl.errors import UsageError
from guardctl.model import Action, CommandDecision, Decision, KubectlCall
from guardctl.recording.audit import Approver, iso_time

APPROVALS = "approvals"
DEFAULT_TIMEOUT = 300.0
MAX_TIMEOUT = 24 * 3600.0
POLL = 0.2
DEFAULT_WINDOW_MINUTES = 15
MAX_WINDOW_MINUTES = 8 * 60
# verbs whose change a server-side `kubectl diff` can show before it is made
DIFF_VERBS = frozenset({"apply", "patch", "replace", "set"})
DIFF_UNAVAILABLE = "diff unavailable"
# a diff longer than this is cut: the human sees the start and that it was cut
MAX_DIFF_CHARS = 20_000
# after its expiry a request is dead even if a process with its pid still runs
EXPIRY_GRACE = 5.0
GONE = ("that request is no longer waiting (answered elsewhere, timed out or withdrawn);"
        " your answer was not used")

Clock = Callable[[], float]
Sleep = Callable[[float], None]


class Outcome(NamedTuple):
    approved: bool
    approver: Approver | None
    # the human's reason when declined; "timed out after N s"; "approved once"/"window until …"
    reason: str
    how: str  # "inline" | "queue" | "window" | "timeout"


class Scope(NamedTuple):
    """One (rule, namespace) pair: what a window covers, on one cluster."""

    rule: str
    namespace: str


class Request(NamedTuple):
    """Everything a human needs to decide, and what ties an answer to this one request."""

    id: str
    nonce: str
    key: str  # command_key(): the exact command, rules, namespace and cluster
    pid: int
    pid_start: str  # the waiter's start time from /proc, "" where there is no /proc
    created: float
    expires: float
    line: str
    readings: tuple[str, ...]
    rules: tuple[tuple[str, str], ...]  # (rule id, reason)
    # the pairs a window would cover; empty when the decision cannot be windowed
    scopes: tuple[Scope, ...]
    context: str
    cluster: str
    namespaces: tuple[str, ...]
    risks: tuple[str, ...]
    problems: tuple[str, ...]
    diff: str | None  # None: not a verb with a diff
    # who asked, when a broker's agent did: `alice (uid 1001, agent)`; "" for this user
    requester: str = ""
    # a `-f -` manifest as guardctl read it from stdin, masked; None when there is none
    manifest: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in self._asdict().items() if k != "scopes"}
        data["scopes"] = [[s.rule, s.namespace] for s in self.scopes]
        return data


class AnswerError(Exception):
    """The console could not answer a request (gone, dead, or cannot be windowed)."""


# --------------------------------------------------------------------------- settings


def approval_timeout(environ: Mapping[str, str]) -> float:
    """`GUARDCTL_APPROVAL_TIMEOUT` in seconds; a malformed value is a usage error, never a guess."""
    raw = environ.get("GUARDCTL_APPROVAL_TIMEOUT", "")
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 < value <= MAX_TIMEOUT:
        raise UsageError(
            f"GUARDCTL_APPROVAL_TIMEOUT={raw!r} is not a number of seconds above 0"
            f" and at most {int(MAX_TIMEOUT)}"
        )
    return value


def seconds_text(value: float) -> str:
    return f"{value:g} s"


# --------------------------------------------------------------------------- what is asked


def window_scopes(decision: Decision, default_namespace: str) -> tuple[Scope, ...]:
    """The (rule, namespace) pairs that together make `decision` need approval: each rule
    of a command in each namespace the command touches (`command_namespaces`).

    Empty when some part needs approval for a reason no rule names (a line guardctl could
    not fully understand, a manifest it could not see): no window may cover that, a human
    must look every time.
    """
    if decision.problems:
        return ()
    scopes: list[Scope] = []
    for command in decision.commands:
        if command.action is not Action.APPROVE:
            continue
        rules = [h.id for h in command.hits if h.action is Action.APPROVE]
        if not rules or command.problems:
            return ()
        namespaces = command_namespaces(command, default_namespace)
        scopes.extend(Scope(rule, namespace) for rule in rules for namespace in namespaces)
    return tuple(dict.fromkeys(scopes))


def command_namespaces(command: CommandDecision, default_namespace: str) -> tuple[str, ...]:
    """Every namespace `command` touches: "*" for all of them; else each namespace its
    manifests name (files, stdin, heredocs, rendered kustomizations), and the one from its
    flags (or `default_namespace`, "" for the context's) when it has no manifest or one of
    its objects names none. An object without a namespace goes where kubectl sends it: the
    flag's namespace, else the context's."""
    call = command.call
    if call is None:
        return (default_namespace,)
    if call.all_namespaces:
        return ("*",)
    given = str(call.namespace or default_namespace)
    objects = command.report.objects if command.report is not None else ()
    named = [o.namespace for o in objects if o.namespace]
    unnamed = not objects or any(not o.namespace for o in objects)
    return tuple(dict.fromkeys([*named, *([given] if unnamed else [])]))


def command_key(decision: Decision, cluster: str, default_namespace: str) -> str:
    """sha256 naming one exact command: argv, its rule ids and namespaces, and the cluster."""
    parts = [
        [list(c.argv), [h.id for h in c.hits], list(command_namespaces(c, default_namespace))]
        for c in decision.commands
    ]
    text = json.dumps([cluster, parts], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class DiffUnavailable(Exception):
    """Why no diff can be shown; a diff callable raises it, and the human reads the reason."""


def wants_diff(call: KubectlCall) -> bool:
    """A verb whose change a human should see as a diff before approving it: apply, patch,
    replace, set, and create from manifests (-f/-k)."""
    verb = call.verb.split(" ")[0]
    return verb in DIFF_VERBS or (
        verb == "create" and (call.has_flag("filename") or call.has_flag("kustomize"))
    )


def diff_text(decision: Decision, diff: Callable[[], str | None] | None) -> str | None:
    """What the request shows under "kubectl diff": the (cut) diff, or "diff unavailable:"
    and why; None for commands a diff cannot show a change of."""
    calls = [c.call for c in decision.commands if c.call is not None]
    if not any(wants_diff(call) for call in calls):
        return None
    if diff is None:
        verbs = sorted({c.verb.split(" ")[0] for c in calls if wants_diff(c)})
        return (f"{DIFF_UNAVAILABLE}: kubectl diff compares manifests given with -f or -k,"
                f" and this {'/'.join(verbs)} has none")
    try:
        text = diff()
    except DiffUnavailable as exc:
        return f"{DIFF_UNAVAILABLE}: {exc}"
    except Exception as exc:  # noqa: BLE001 - any failure of the diff shows as "unavailable"
        return f"{DIFF_UNAVAILABLE}: the diff failed: {_first_line(str(exc)) or type(exc).__name__}"
    if text is None:
        return f"{DIFF_UNAVAILABLE}: kubectl diff gave nothing to show"
    return cut(text, "diff") or "(no changes)"


def cut(text: str, what: str) -> str:
    """`text`, cut at MAX_DIFF_CHARS with a line saying so."""
    if len(text) <= MAX_DIFF_CHARS:
        return text
    return text[:MAX_DIFF_CHARS] + f"\n… {what} cut at {MAX_DIFF_CHARS} characters"


def _first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0][:300]


def _process_start(pid: int) -> str | None:
    """The start time of a live, non-zombie process (Linux /proc), None when it is gone.

    Compared with the value stored at request time it tells the waiter from a later
    process that happens to reuse its pid.
    """
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = text.rsplit(")", 1)[-1].split()
    # fields after the command name start at field 3 (state); starttime is field 22
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return fields[19]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def waiter_alive(request: Request, now: float) -> bool:
    if now > request.expires + EXPIRY_GRACE:
        return False
    if request.pid_start:
        return _process_start(request.pid) == request.pid_start
    return _pid_alive(request.pid)


def config_defaults(env: Environment) -> tuple[str, str]:
    """(context, default namespace) from guardctl's config; ("", "") without one."""
    config = load_config(env.config_path)
    return (config.context, config.namespace) if config else ("", "")


def build_request(
    decision: Decision,
    line: str,
    *,
    cluster: str,
    context: str,
    default_namespace: str,
    diff: str | None,
    now: float,
    timeout: float,
    requester: str = "",
    manifest: str | None = None,
) -> Request:
    """The request a human is shown for `decision`, with a fresh id and nonce."""
    from guardctl.firewall.explain import reading

    calls = [c for c in decision.commands if c.action is not Action.ALLOW]
    risks = [r for c in calls if c.report is not None for r in c.report.risks]
    return Request(
        id=secrets.token_hex(16),
        nonce=secrets.token_hex(16),
        key=command_key(decision, cluster, default_namespace),
        pid=os.getpid(),
        pid_start=_process_start(os.getpid()) or "",
        created=now,
        expires=now + timeout,
        line=line,
        readings=tuple(reading(c.call) if c.call else " ".join(c.argv) for c in calls),
        rules=tuple(dict.fromkeys((h.id, h.reason) for c in calls for h in c.hits)),
        scopes=window_scopes(decision, default_namespace),
        context=context,
        cluster=cluster,
        namespaces=tuple(dict.fromkeys(
            n for c in calls for n in command_namespaces(c, default_namespace))),
        risks=tuple(f"{r.name}: {r.detail}" if r.detail else r.name for r in risks),
        problems=(*decision.problems, *(p for c in calls for p in c.problems)),
        diff=diff,
        requester=requester,
        manifest=cut(manifest, "manifest") if manifest is not None else None,
    )


# --------------------------------------------------------------------------- files


def _write_atomic(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(data, ensure_ascii=False))


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _text(data: dict[str, Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise ValueError(f"{key} is not a string")
    return value


def _optional_text(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key} is not a string")
    return value


def _number(data: dict[str, Any], key: str) -> float:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{key} is not a number")
    return float(value)


def _strings(data: dict[str, Any], key: str) -> tuple[str, ...]:
    value = data[key]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key} is not a list of strings")
    return tuple(value)


def _pairs(data: dict[str, Any], key: str) -> tuple[tuple[str, str], ...]:
    value = data[key]
    if not isinstance(value, list) or not all(
        isinstance(v, list) and len(v) == 2 and all(isinstance(s, str) for s in v) for v in value
    ):
        raise ValueError(f"{key} is not a list of string pairs")
    return tuple((v[0], v[1]) for v in value)


def request_from_json(data: dict[str, Any]) -> Request:
    """A stored request; ValueError when any field is missing or has the wrong type."""
    try:
        if "diff" not in data:
            raise KeyError("diff")
        return Request(
            id=_text(data, "id"),
            nonce=_text(data, "nonce"),
            key=_text(data, "key"),
            pid=int(_number(data, "pid")),
            pid_start=_text(data, "pid_start"),
            created=_number(data, "created"),
            expires=_number(data, "expires"),
            line=_text(data, "line"),
            readings=_strings(data, "readings"),
            rules=_pairs(data, "rules"),
            scopes=tuple(Scope(r, n) for r, n in _pairs(data, "scopes")),
            context=_text(data, "context"),
            cluster=_text(data, "cluster"),
            namespaces=_strings(data, "namespaces"),
            risks=_strings(data, "risks"),
            problems=_strings(data, "problems"),
            diff=_optional_text(data, "diff"),
            requester=str(data.get("requester") or ""),
            manifest=_optional_text(data, "manifest"),
        )
    except KeyError as exc:
        raise ValueError(f"request lacks {exc}") from None


def _approver_json(approver: Approver) -> dict[str, Any]:
    return {"user": approver.user, "tty": approver.tty, "at": approver.at}


def _approver_from(data: Any) -> Approver | None:
    if not isinstance(data, dict):
        return None
    user, tty, at = data.get("user"), data.get("tty"), data.get("at")
    if not isinstance(user, str) or not isinstance(at, (int, float)):
        return None
    return Approver(user=user, tty=tty if isinstance(tty, str) else None, at=float(at))


class Queue:
    """The approvals folder: requests/, answers/ and windows/ under `$GUARDCTL_HOME/approvals`."""

    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir / APPROVALS
        self.requests = self.root / "requests"
        self.answers = self.root / "answers"
        self.windows = self.root / "windows"

    def _ensure(self) -> None:
        from guardctl.recording.recorder import private_dir

        for folder in (self.requests, self.answers, self.windows):
            private_dir(folder)

    def _name(self, request_id: str) -> str:
        # ids are our own hex tokens; anything else must not become a path
        if not (request_id.isalnum() and request_id.isascii()):
            raise AnswerError(f"invalid request id {request_id!r}")
        return f"{request_id}.json"

    # ---- the waiter's side

    def put(self, request: Request) -> None:
        self._ensure()
        _write_atomic(self.requests / self._name(request.id), request.to_json())

    def withdraw(self, request: Request) -> Outcome | None:
        """Take `request` out of the queue; returns the answer it got before that, if any.
        An answer that comes later finds no request and is refused."""
        with self._hold(request.id) as queued:
            outcome = self.take_answer(request) if queued else None
            self._remove(request.id)
        return outcome

    def has_request(self, request_id: str) -> bool:
        return (self.requests / self._name(request_id)).exists()

    def take_answer(self, request: Request) -> Outcome | None:
        """The answer to `request` (final: it is never replaced); None while there is none."""
        path = self.answers / self._name(request.id)
        data = _read_json(path)
        if data is None and not path.exists():
            return None
        return _outcome(data, request)

    @contextlib.contextmanager
    def _hold(self, request_id: str) -> Iterator[bool]:
        """Hold the request's lock for the block; yields whether it is still queued.

        The lock is an exclusive `flock` on the request file itself, released when the
        file is closed, by the kernel too when its holder dies; a request removed while
        someone waited for its lock has no links left, and counts as gone.
        """
        path = self.requests / self._name(request_id)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            fd = -1
        if fd < 0:
            yield False
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield os.fstat(fd).st_nlink > 0
        finally:
            os.close(fd)

    def _remove(self, request_id: str) -> None:
        """Remove a request and its answer, holding its lock: the request first, so that an
        answer file without its request is always one on its way out."""
        for folder in (self.requests, self.answers):
            (folder / self._name(request_id)).unlink(missing_ok=True)

    # ---- the console's side

    def load(self, request_id: str) -> Request | None:
        data = _read_json(self.requests / self._name(request_id))
        try:
            return request_from_json(data) if data is not None else None
        except ValueError:
            return None

    def pending(self, now: float) -> list[Request]:
        """Live requests not answered yet, oldest first."""
        found = [self.load(p.stem) for p in self._files(self.requests)]
        live = [r for r in found if r is not None and waiter_alive(r, now)]
        unanswered = [r for r in live if not (self.answers / self._name(r.id)).exists()]
        return sorted(unanswered, key=lambda r: (r.created, r.id))

    def sweep(self, now: float) -> int:
        """Remove requests whose waiter is gone (or that cannot be read), orphaned answers
        and expired windows. Returns how many requests were removed."""
        removed = 0
        for path in self._files(self.requests):
            with self._hold(path.stem) as queued:
                request = self.load(path.stem) if queued else None
                if queued and (request is None or not waiter_alive(request, now)):
                    self._remove(path.stem)
                    removed += 1
        for path in self._files(self.answers):
            if not (self.requests / path.name).exists():
                path.unlink(missing_ok=True)
        for path in self._files(self.windows):
            until = (_read_json(path) or {}).get("until")
            if not (isinstance(until, (int, float)) and until > now):
                path.unlink(missing_ok=True)
        return removed

    def _files(self, folder: Path) -> list[Path]:
        try:
            names = sorted(folder.iterdir())
        except FileNotFoundError:
            return []
        # only names of our own ids: anything else in the folder is not a request
        return [p for p in names if p.suffix == ".json" and p.stem.isalnum() and p.stem.isascii()]

    def answered(self, request_id: str) -> str | None:
        """Who answered the request and how ("approved by alice"); None before an answer."""
        path = self.answers / self._name(request_id)
        data = _read_json(path)
        if data is None:
            return "answered" if path.exists() else None
        approver = _approver_from(data.get("approver"))
        verdict = "approved" if data.get("approved") is True else "declined"
        return f"{verdict} by {approver.user}" if approver else verdict

    def write_answer(self, request: Request, body: dict[str, Any]) -> None:
        """Write the answer; only under the request's lock, after `answered()` said None."""
        self._ensure()
        _write_atomic(
            self.answers / self._name(request.id),
            {**body, "nonce": request.nonce, "key": request.key},
        )

    # ---- windows

    def _window_path(self, cluster: str, scope: Scope) -> Path:
        text = json.dumps([cluster, scope.rule, scope.namespace], ensure_ascii=False)
        return self.windows / (hashlib.sha256(text.encode("utf-8")).hexdigest() + ".json")

    def open_window(self, cluster: str, scope: Scope, until: float, approver: Approver) -> None:
        self._ensure()
        body = {
            "cluster": cluster,
            "rule": scope.rule,
            "namespace": scope.namespace,
            "until": until,
            "approver": _approver_json(approver),
        }
        _write_atomic(self._window_path(cluster, scope), body)

    def covering_window(
        self, scopes: tuple[Scope, ...], cluster: str, now: float
    ) -> tuple[Approver, float] | None:
        """(creator, earliest end) when live windows cover every scope; None otherwise."""
        found: list[tuple[Approver, float]] = []
        for scope in scopes:
            data = _read_json(self._window_path(cluster, scope)) or {}
            approver = _approver_from(data.get("approver"))
            until = data.get("until")
            same = (data.get("cluster"), data.get("rule"), data.get("namespace")) == (
                cluster,
                scope.rule,
                scope.namespace,
            )
            if not (same and approver and isinstance(until, (int, float)) and until > now):
                return None
            found.append((approver, float(until)))
        return min(found, key=lambda f: f[1]) if found else None


def _outcome(data: dict[str, Any] | None, request: Request) -> Outcome:
    """What an answer file means for `request`. Anything that does not carry this request's
    nonce and key, or is malformed, declines: an answer must never be guessed into a yes."""
    if (
        data is None
        or data.get("nonce") != request.nonce
        or data.get("key") != request.key
        or not isinstance(data.get("approved"), bool)
        or not isinstance(data.get("reason"), str)
    ):
        return Outcome(
            False, None, "an answer that does not match this request was refused", "queue"
        )
    approver = _approver_from(data.get("approver"))
    approved = bool(data["approved"]) and approver is not None
    return Outcome(approved, approver, str(data["reason"]), "queue")


# --------------------------------------------------------------------------- answering


def answer(
    state_dir: Path,
    request_id: str,
    *,
    approved: bool,
    approver: Approver,
    reason: str = "",
    window_minutes: int | None = None,
) -> str:
    """Answer one pending request (what the console's keys do). Returns what was done.

    `window_minutes` also opens a window for each of the request's (rule, namespace)
    pairs on its cluster. Raises AnswerError when the request is gone, its waiter is
    dead, it was answered already (the first answer is final), or it cannot be windowed.
    The check and the write are one step under the request's lock (see the module
    docstring), whichever processes answer at once.
    """
    queue = Queue(state_dir)
    with queue._hold(request_id) as queued:
        request = queue.load(request_id) if queued else None
        if request is None or not waiter_alive(request, approver.at):
            raise AnswerError(GONE)
        earlier = queue.answered(request_id)
        if earlier is not None:
            raise AnswerError(f"already {earlier}: the first answer stands, yours was not used")
        if not approved:
            text = reason.strip() or f"declined by {approver.user}"
            queue.write_answer(
                request, {"approved": False, "reason": text, "approver": _approver_json(approver)}
            )
            return f"declined: {text}"
        text = "approved once"
        if window_minutes is not None:
            text = _open_windows(queue, request, window_minutes, approver)
        queue.write_answer(
            request, {"approved": True, "reason": text, "approver": _approver_json(approver)}
        )
        return text


def _open_windows(queue: Queue, request: Request, minutes: int, approver: Approver) -> str:
    if not request.scopes:
        raise AnswerError("no rule alone asks for this approval, so no window can cover it")
    if not 1 <= minutes <= MAX_WINDOW_MINUTES:
        raise AnswerError(f"a window lasts 1 to {MAX_WINDOW_MINUTES} minutes")
    until = approver.at + minutes * 60
    for scope in request.scopes:
        queue.open_window(request.cluster, scope, until, approver)
    return f"window until {iso_time(until)}"
