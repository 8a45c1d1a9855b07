"""`guardctl approvals`: the human's live view of pending approval requests.

Runs in the human's own terminal (stdin and stdout must be a terminal), on its alternate
screen, redrawn in place (rich's Live): however long it runs, nothing piles up in the
terminal's scrollback, and the screen is laid out to fit (view.py), so a long diff scrolls
inside the panel (PgUp/PgDn, space) while the command, rules and keys stay in sight. Keys:
`a` approve once, `w` approve the request's rule(s) in its namespaces for N minutes, `d`
decline and type a reason (Enter sends, Esc cancels), arrows or `j`/`k` select, `q` quits.
A new request rings the terminal's bell and, where `notify-send` is installed, shows a
desktop notification; the terminal's title holds the pending count. Requests whose waiting
guardctl has died are removed on sight and can never be approved.

Why rich.live and not textual: rich is already guardctl's dependency and Live on the
alternate screen is all this view needs; the keys are read by guardctl itself (prompt.Keys)
because what a key may answer is the point of this module (below), and textual would bring
its own event loop and a dozen packages to every install for a screen of text.

A key answers only the request the person was shown: when the selected request goes away
(answered in another window, timed out, withdrawn) the view selects the next one and says
so, and the next answering key only shows what is selected now; a key that comes when the
selection no longer is the one last drawn answers nothing either. The answer itself names
the request by id, and the first answer to a request is final (queue.answer).
"""

from __future__ import annotations

import codecs
import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO

from rich.console import Console
from rich.live import Live

from guardctl.approvals.prompt import (
    Keys,
    cbreak,
    current_user,
    shown,
    terminal_name,
)
from guardctl.approvals.queue import (
    DEFAULT_WINDOW_MINUTES,
    MAX_WINDOW_MINUTES,
    AnswerError,
    Queue,
    Request,
    answer,
)
from guardctl.approvals.view import frame
from guardctl.env import Environment
from guardctl.recording.audit import Approver
from guardctl.status import ExitStatus

# how often the view wakes up to look for new requests
REFRESH = 0.5
# the ages shown are redrawn this often even when nothing else changed
REDRAW_EVERY = 5.0
# the console ends itself after this long, so a forgotten one does not run for ever
MAX_SESSION = 12 * 3600.0
# a typed reason or number of minutes: at most this long, typed within this time
MAX_LINE = 500
LINE_TIMEOUT = 600.0
UP = frozenset({b"k", b"\x1b[A", b"\x1bOA"})
DOWN = frozenset({b"j", b"\x1b[B", b"\x1bOB"})
PAGE_UP = frozenset({b"\x1b[5~", b"b"})
PAGE_DOWN = frozenset({b"\x1b[6~", b" "})
ANSWER_KEYS = frozenset({b"a", b"w", b"d"})
ENTER = frozenset({"\r", "\n"})
BACKSPACE = frozenset({"\x7f", "\x08"})
# xterm's title stack: keep the title the terminal had, and give it back on the way out
PUSH_TITLE, POP_TITLE = "\x1b[22;0t", "\x1b[23;0t"
# a notify-send that has not ended after this long is stopped
NOTIFY_SECONDS = 5.0


def run_console(env: Environment, *, clock: Callable[[], float] = time.time) -> int:
    """`guardctl approvals`; returns an exit status (2 without a terminal)."""
    if not (env.stdin.isatty() and env.stdout.isatty()):
        env.stderr.write("guardctl approvals: needs a terminal: run it in your own shell\n")
        return ExitStatus.USAGE
    fd = env.stdin.fileno()
    console = Console(
        file=env.stdout, highlight=False, markup=False, no_color="NO_COLOR" in env.environ
    )
    # a broker's worker has no desktop of its own: only a console run by the person notifies
    notifier = _Notifier(env.environ if env.caller is None else None)
    screen = _Screen(Queue(env.state_dir), env.state_dir, Keys(fd), console, clock,
                     terminal_name(fd), current_user(env), notifier)
    with cbreak(fd), _titled(env.stdout), notifier, _live(console) as live:
        screen.live = live
        return screen.run()


@contextlib.contextmanager
def _live(console: Console) -> Iterator[Live]:
    """The alternate screen, redrawn only when told (no refresh thread, no redirection)."""
    live = Live(console=console, screen=True, auto_refresh=False, redirect_stdout=False,
                redirect_stderr=False, transient=True)
    with live:
        yield live


@contextlib.contextmanager
def _titled(out: IO[str]) -> Iterator[None]:
    _write(out, PUSH_TITLE)
    try:
        yield
    finally:
        _write(out, POP_TITLE)


def _write(out: IO[str], text: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        out.write(text)
        out.flush()


def _terminal_size(out: IO[str]) -> tuple[int, int]:
    """(columns, rows) of the terminal the view draws on; 80x24 when it cannot be asked."""
    try:
        size = os.get_terminal_size(out.fileno())
    except (OSError, ValueError):
        return 80, 24
    return max(20, size.columns), max(5, size.lines)


class _Notifier:
    """Desktop notifications with `notify-send`, where it is installed; each one ended by
    the time the view ends (a notify-send that hangs is stopped after NOTIFY_SECONDS)."""

    def __init__(self, environ: Mapping[str, str] | None) -> None:
        found = shutil.which("notify-send", path=environ.get("PATH")) if environ else None
        self.program = found
        self.environ = dict(environ or {})
        self.running: list[tuple[subprocess.Popen[bytes], float]] = []

    def notify(self, title: str, body: str, now: float) -> None:
        """Show `body` masked and cut: a notification daemon may keep what it was shown."""
        from guardctl.masking import detectors, mask

        self._reap(now)
        if self.program is None:
            return
        body = shown(mask.mask_text(body, detectors.default_detectors()))[:200]
        with contextlib.suppress(OSError):
            proc = subprocess.Popen(
                [self.program, "--app-name=guardctl", title, body], env=self.environ,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            self.running.append((proc, now))

    def _reap(self, now: float) -> None:
        for proc, started in list(self.running):
            if proc.poll() is None and now - started > NOTIFY_SECONDS:
                proc.kill()
            if proc.poll() is not None:
                self.running.remove((proc, started))

    def __enter__(self) -> _Notifier:
        return self

    def __exit__(self, *_: object) -> None:
        for proc, _started in self.running:
            try:
                proc.wait(NOTIFY_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.running.clear()


class _Screen:
    __slots__ = ("queue", "state_dir", "keys", "console", "clock", "tty", "user", "selected",
                 "message", "drawn", "moved", "answered", "notifier", "live", "pending",
                 "seen", "offset", "page", "typing")

    def __init__(self, queue: Queue, state_dir: Path, keys: Keys, console: Console,
                 clock: Callable[[], float], tty: str | None, user: str,
                 notifier: _Notifier) -> None:
        self.queue = queue
        self.state_dir = state_dir
        self.keys = keys
        self.console = console
        self.clock = clock
        self.tty = tty
        self.user = user
        self.notifier = notifier
        self.live: Live | None = None
        self.selected: str | None = None  # the selected request's id
        self.message = ""
        self.drawn: Request | None = None  # the selected request as last drawn
        # why the next answering key only shows the selection: the one shown went away
        self.moved: str | None = None
        self.answered: str | None = None  # the request the person answered last
        self.pending: list[Request] = []
        self.seen: set[str] | None = None  # ids seen waiting; None before the first look
        self.offset = 0  # the first line of the details shown
        self.page = 0  # how many lines of details fit
        self.typing: str | None = None  # a line being typed: its prompt and text so far

    def run(self) -> int:
        start = self.clock()
        drawn: object = None
        # bounded by count and time: one turn per key or per REFRESH
        for _ in range(int(MAX_SESSION / REFRESH) * 4):
            now = self.clock()
            if now - start > MAX_SESSION:
                break
            self.pending = self._scan(now)
            self.console.size = _terminal_size(self.console.file)
            state = ([r.id for r in self.pending], self.selected, self.message,
                     int(now / REDRAW_EVERY), self.offset, tuple(self.console.size))
            if state != drawn:
                self._draw(now)
                drawn = state
            key = self.keys.next(REFRESH)
            if key in (b"q", b"Q"):
                return ExitStatus.OK
            if key is None:
                continue
            # what waits when the key came, not what waited before the wait for it
            self.pending = self._scan(self.clock())
            if self.pending:
                self._handle(key, self.pending)
                drawn = None  # a prompt typed at the bottom may have been cancelled: redraw
        return ExitStatus.OK

    def _scan(self, now: float) -> list[Request]:
        removed = self.queue.sweep(now)
        if removed:
            self.message = (
                f"removed {removed} dead request(s): the guardctl that asked is gone,"
                " so nothing can be approved there"
            )
        pending = self.queue.pending(now)
        self._announce(pending, now)
        if self.selected not in [r.id for r in pending]:
            if self.selected not in (None, self.answered):
                self._lost(str(self.selected))
            self.selected = pending[0].id if pending else None
            self.offset = 0
        return pending

    def _announce(self, pending: list[Request], now: float) -> None:
        """The count in the terminal's title; the bell and a notification for each request
        that was not waiting at the last look (not for those waiting when the view starts)."""
        ids = {r.id for r in pending}
        if self.seen is None or ids != self.seen:
            # ended by ST, not BEL: a BEL here is the bell, and only for a new request
            _write(self.console.file, f"\x1b]0;guardctl approvals: {len(pending)} pending\x1b\\")
        new = [r for r in pending if self.seen is not None and r.id not in self.seen]
        self.seen = ids
        if not new:
            return
        _write(self.console.file, "\a")
        rules = ", ".join(dict.fromkeys(rule for r in new for rule, _ in r.rules))
        self.notifier.notify(f"guardctl: {len(new)} approval request(s)",
                             f"{rules or 'not understood'}: {new[0].line}", now)

    def _lost(self, request_id: str) -> None:
        """The selected request is no longer waiting: say so, and make the next answering
        key show the new selection rather than answer it."""
        line = self.drawn.line if self.drawn and self.drawn.id == request_id else "the request"
        self.moved = (f"{shown(line)}: no longer waiting (answered elsewhere, timed out or"
                      " withdrawn)")
        self.message = f"{self.moved}; the selection moved"

    def _current(self, pending: list[Request]) -> Request:
        return next((r for r in pending if r.id == self.selected), pending[0])

    def _handle(self, key: bytes, pending: list[Request]) -> None:
        index = pending.index(self._current(pending))
        if key in UP or key in DOWN:
            step = -1 if key in UP else 1
            self.selected = pending[max(0, min(len(pending) - 1, index + step))].id
            self.offset = 0
            self.moved = None
            return
        if key in PAGE_UP or key in PAGE_DOWN:
            step = max(1, self.page - 1)
            self.offset = max(0, self.offset + (-step if key in PAGE_UP else step))
            return
        request = pending[index]
        if key in ANSWER_KEYS and (self.moved or self.drawn is None
                                   or self.drawn.id != request.id):
            why = self.moved or "the selection changed as you pressed the key"
            self.moved = None
            self.message = (f"nothing was answered: {why}; look at the request selected now,"
                            " then press the key again")
            return
        if key == b"a":
            self._answer(request, approved=True)
        elif key == b"w":
            minutes = self._ask_minutes(request)
            if minutes is not None:
                self._answer(request, approved=True, window_minutes=minutes)
        elif key == b"d":
            reason = self._ask_line("reason for declining (Enter sends, Esc cancels): ")
            if reason is not None:
                self._answer(request, approved=False, reason=reason)

    def _answer(
        self, request: Request, *, approved: bool, reason: str = "",
        window_minutes: int | None = None,
    ) -> None:
        approver = Approver(user=self.user, tty=self.tty, at=self.clock())
        try:
            done = answer(self.state_dir, request.id, approved=approved, approver=approver,
                          reason=reason, window_minutes=window_minutes)
        except AnswerError as exc:
            done = str(exc)
        self.message = f"{done}: {shown(request.line)}"
        # its going away is no surprise; keys typed ahead must not answer the next request
        self.answered = request.id
        self.keys.discard()

    def _ask_minutes(self, request: Request) -> int | None:
        if not request.scopes:
            self.message = "no rule alone asks for this, so no window can cover it; use a or d"
            return None
        pairs = ", ".join(f"{s.rule} in {s.namespace or '(context default)'}"
                          for s in request.scopes)
        text = self._ask_line(
            f"approve {shown(pairs)} for how many minutes? [{DEFAULT_WINDOW_MINUTES}] "
            f"(1-{MAX_WINDOW_MINUTES}, Esc cancels): "
        )
        if text is None:
            return None
        if not text.strip():
            return DEFAULT_WINDOW_MINUTES
        if text.strip().isdigit() and 1 <= int(text) <= MAX_WINDOW_MINUTES:
            return int(text)
        self.message = f"{shown(text)!r} is not 1-{MAX_WINDOW_MINUTES} minutes; nothing approved"
        return None

    def _ask_line(self, prompt: str) -> str | None:
        """A line typed at the bottom of the view; None on Esc or when nothing is typed in
        LINE_TIMEOUT seconds."""
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        typed: list[str] = []
        deadline = self.clock() + LINE_TIMEOUT
        try:
            for _ in range(int(LINE_TIMEOUT / REFRESH) + MAX_LINE * 8):
                self.typing = prompt + "".join(typed)
                if not self.keys.waiting():
                    self._draw(self.clock())
                if self.clock() > deadline:
                    return None
                key = self.keys.next(REFRESH)
                if key is None:
                    continue
                if key.startswith(b"\x1b"):
                    return None
                for char in decoder.decode(key):
                    if char in ENTER:
                        return "".join(typed)
                    _edit(typed, char)
            return None
        finally:
            self.typing = None

    def _draw(self, now: float) -> None:
        selected = self._current(self.pending) if self.pending else None
        self.drawn = selected
        shown_frame = frame(self.console, self.pending, selected, now, message=self.message,
                            bottom=self.typing, offset=self.offset)
        self.offset, self.page = shown_frame.offset, shown_frame.detail_rows
        if self.live is not None:
            self.live.update(shown_frame.renderable, refresh=True)


def _edit(typed: list[str], char: str) -> None:
    """Apply one typed character to the line."""
    if char in BACKSPACE:
        if typed:
            typed.pop()
    elif char.isprintable() and len(typed) < MAX_LINE:
        typed.append(char)
