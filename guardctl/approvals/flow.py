"""Asking a human about an `approve` decision: a live window, the inline prompt, or the queue.

`request_approval` tries, in order:

1. a live window (`w` in the console) covering every (rule, namespace) pair of the decision
   on this cluster: approved at once, the approver is the window's creator;
2. the inline prompt, when a person is at guardctl's own terminal (`prompt.open_terminal`);
3. the queue (`queue.Queue`): the request waits for `guardctl approvals` until
   `GUARDCTL_APPROVAL_TIMEOUT` runs out; a webhook in the config file is told of it
   (`webhook`), and a signed answer from off the machine (`signed`) counts like a local one.
"""

import contextlib
import math
import signal
import time
from collections.abc import Callable, Iterator

from guardctl.approvals.queue import (
    POLL,
    Clock,
    Outcome,
    Queue,
    Request,
    Sleep,
    approval_timeout,
    build_request,
    config_defaults,
    diff_text,
    seconds_text,
    window_scopes,
)
from guardctl.env import Environment
from guardctl.model import Decision
from guardctl.recording.audit import iso_time
from guardctl.signals import exit_on_signal, signal_handlers

# --------------------------------------------------------------------------- waiting


def request_approval(
    env: Environment,
    decision: Decision,
    line: str,
    *,
    cluster: str = "",
    diff: Callable[[], str | None] | None = None,
    manifest: str | None = None,
    defaults: tuple[str, str] | None = None,
    clock: Clock = time.time,
    sleep: Sleep = time.sleep,
) -> Outcome:
    """Ask a human about an `approve` decision; see the module docstring for the order.

    `cluster` is the server URL from guardctl's config ("" without one). `diff` returns the
    masked server-side diff for apply/patch/replace/set, or raises `DiffUnavailable` saying
    why there is none. `manifest` is a masked `-f -` manifest to show. `defaults` is the
    (context, default namespace) the command runs in (default: guardctl's config's first
    context). KeyboardInterrupt
    propagates (the caller returns 130); SIGTERM/SIGHUP become SystemExit(128+n). The
    queued request is removed on every one of those paths.
    """
    timeout = approval_timeout(env.environ)
    queue = Queue(env.state_dir)
    context, default_namespace = defaults if defaults is not None else config_defaults(env)
    scopes = window_scopes(decision, default_namespace)
    window = queue.covering_window(scopes, cluster, clock()) if scopes else None
    if window is not None:
        return Outcome(True, window[0], f"window until {iso_time(window[1])}", "window")
    # the diff reaches the cluster (read-only), so it runs only when a human will look
    request = build_request(
        decision,
        line,
        cluster=cluster,
        context=context,
        default_namespace=default_namespace,
        diff=diff_text(decision, diff),
        now=clock(),
        timeout=timeout,
        requester=env.caller.describe() if env.caller is not None else "",
        manifest=manifest,
    )
    from guardctl.approvals import prompt

    terminal = prompt.open_terminal(env)
    if terminal is not None:
        return prompt.ask(terminal, request, timeout, clock=clock, user=prompt.current_user(env))
    return _wait_in_queue(env, queue, request, timeout, clock, sleep)


def _wait_in_queue(
    env: Environment, queue: Queue, request: Request, timeout: float, clock: Clock, sleep: Sleep
) -> Outcome:
    rules = ", ".join(r for r, _ in request.rules) or "not fully understood"
    env.stderr.write(
        f"guardctl: waiting up to {seconds_text(timeout)} for a human to approve this ({rules});"
        " they answer by running `guardctl approvals` in their own terminal.\n"
    )
    env.stderr.flush()
    # requests whose waiter was killed outright (SIGKILL) go before this one comes
    queue.sweep(clock())
    with _signals_exit():
        try:
            queue.put(request)
            _announce(env, request)
            outcome = _poll(queue, request, timeout, clock, sleep)
        finally:
            # the lock makes this the end: whatever was answered before counts (even at the
            # timeout), and an answer after it is refused to its approver
            final = queue.withdraw(request)
    if final is not None:
        return final
    if outcome is not None:
        return outcome
    return Outcome(False, None, f"timed out after {seconds_text(timeout)}", "timeout")


def _announce(env: Environment, request: Request) -> None:
    """Post the request to the webhook the config names, if any (it never blocks the wait;
    see `webhook`). The module is imported only when a config file exists."""
    if env.config_path.exists():
        from guardctl.approvals import webhook

        webhook.announce(env, request)


def _poll(
    queue: Queue, request: Request, timeout: float, clock: Clock, sleep: Sleep
) -> Outcome | None:
    """The answer, or the request's removal by someone else; None when time runs out."""
    deadline = clock() + timeout
    # bounded in count as well as time: a sleep cut short by signals cannot spin forever
    for _ in range(math.ceil(timeout / POLL) + 2):
        outcome = queue.take_answer(request)
        if outcome is not None:
            return outcome
        if not queue.has_request(request.id):
            return Outcome(False, None, "the request was removed before anyone answered", "queue")
        left = deadline - clock()
        if left <= 0:
            break
        sleep(min(POLL, left))
    return None


@contextlib.contextmanager
def _signals_exit() -> Iterator[None]:
    """SIGTERM and SIGHUP raise SystemExit(128+n) while waiting, so `finally` blocks run
    and the request is removed (Python's default for both kills without unwinding)."""
    with signal_handlers({signal.SIGTERM: exit_on_signal, signal.SIGHUP: exit_on_signal}):
        yield


def outcome_message(outcome: Outcome) -> str:
    """The stderr line for the agent after an approval was asked."""
    who = f" by {outcome.approver.user}" if outcome.approver else ""
    if outcome.approved:
        return f"guardctl: approved{who} ({outcome.reason})."
    if outcome.how == "timeout":
        return f"guardctl: nobody approved this: {outcome.reason}. Nothing was sent to the cluster."
    return f"guardctl: declined{who}: {outcome.reason}. Nothing was sent to the cluster."
