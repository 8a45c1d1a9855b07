"""`guardctl approvals`: the human's live view of pending approval requests.

Runs in the human's own terminal (stdin and stdout must be a terminal). Keys: `a` approve
once, `w` approve the request's rule(s) in its namespace for N minutes, `d` decline and
type a reason (Enter sends, Esc cancels), arrows or `j`/`k` select, `q` quits. Requests
whose waiting guardctl has died are removed on sight and can never be approved.

A key answers only the request the person was shown: when the selected request goes away
(answered in another window, timed out, withdrawn) the view selects the next one and says
so, and the next answering key only shows what is selected now; a key that comes when the
selection no longer is the one last drawn answers nothing either. The answer itself names
the request by id, and the first answer to a request is final (queue.answer).
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.text import Text

from guardctl.approvals.prompt import (
    Keys,
    cbreak,
    current_user,
    request_panel,
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
ANSWER_KEYS = frozenset({b"a", b"w", b"d"})
ENTER = frozenset({"\r", "\n"})
BACKSPACE = frozenset({"\x7f", "\x08"})
KEYS_HELP = (
    "a approve once   w approve rule+namespace for a while   d decline with a reason   "
    "j/k or arrows select   q quit"
)


def run_console(env: Environment, *, clock: Callable[[], float] = time.time) -> int:
    """`guardctl approvals`; returns an exit status (2 without a terminal)."""
    if not (env.stdin.isatty() and env.stdout.isatty()):
        env.stderr.write("guardctl approvals: needs a terminal: run it in your own shell\n")
        return ExitStatus.USAGE
    fd = env.stdin.fileno()
    console = Console(
        file=env.stdout, highlight=False, markup=False, no_color="NO_COLOR" in env.environ
    )
    screen = _Screen(Queue(env.state_dir), env.state_dir, Keys(fd), console, clock,
                     terminal_name(fd), current_user(env))
    with cbreak(fd):
        return screen.run()


class _Screen:
    __slots__ = ("queue", "state_dir", "keys", "console", "clock", "tty", "user", "selected",
                 "message", "drawn", "moved", "answered")

    def __init__(self, queue: Queue, state_dir: Path, keys: Keys, console: Console,
                 clock: Callable[[], float], tty: str | None, user: str) -> None:
        self.queue = queue
        self.state_dir = state_dir
        self.keys = keys
        self.console = console
        self.clock = clock
        self.tty = tty
        self.user = user
        self.selected: str | None = None  # the selected request's id
        self.message = ""
        self.drawn: Request | None = None  # the selected request as last drawn
        # why the next answering key only shows the selection: the one shown went away
        self.moved: str | None = None
        self.answered: str | None = None  # the request the person answered last

    def run(self) -> int:
        start = self.clock()
        drawn: object = None
        # bounded by count and time: one turn per key or per REFRESH
        for _ in range(int(MAX_SESSION / REFRESH) * 4):
            now = self.clock()
            if now - start > MAX_SESSION:
                break
            pending = self._scan(now)
            state = ([r.id for r in pending], self.selected, self.message, int(now / REDRAW_EVERY))
            if state != drawn:
                self._draw(pending, now)
                drawn = state
            key = self.keys.next(REFRESH)
            if key in (b"q", b"Q"):
                return ExitStatus.OK
            if key is None:
                continue
            # what waits when the key came, not what waited before the wait for it
            pending = self._scan(self.clock())
            if pending:
                self._handle(key, pending)
        return ExitStatus.OK

    def _scan(self, now: float) -> list[Request]:
        removed = self.queue.sweep(now)
        if removed:
            self.message = (
                f"removed {removed} dead request(s): the guardctl that asked is gone,"
                " so nothing can be approved there"
            )
        pending = self.queue.pending(now)
        if self.selected not in [r.id for r in pending]:
            if self.selected not in (None, self.answered):
                self._lost(str(self.selected))
            self.selected = pending[0].id if pending else None
        return pending

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
            self.moved = None
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
        out = self.console.file
        out.write("\n" + prompt)
        out.flush()
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        typed: list[str] = []
        deadline = self.clock() + LINE_TIMEOUT
        for _ in range(int(LINE_TIMEOUT / REFRESH) + MAX_LINE * 8):
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
                echo = _edit(typed, char)
                out.write(echo)
            out.flush()
        return None

    def _draw(self, pending: list[Request], now: float) -> None:
        self.console.clear()
        self.console.print(Text(f"guardctl approvals: {len(pending)} pending", style="bold"))
        for request in pending:
            mark = ">" if request.id == self.selected else " "
            rules = ",".join(r for r, _ in request.rules) or "not understood"
            namespaces = ",".join(n or "-" for n in request.namespaces)
            self.console.print(
                Text(f"{mark} {rules}  [{namespaces}]  {shown(request.line)}", no_wrap=True,
                     overflow="ellipsis")
            )
        self.drawn = self._current(pending) if pending else None
        if self.drawn is not None:
            self.console.print(request_panel(self.drawn, now))
        else:
            self.console.print("no requests are waiting")
        self.console.print(KEYS_HELP)
        if self.message:
            self.console.print(Text(self.message))


def _edit(typed: list[str], char: str) -> str:
    """Apply one typed character to the line; returns what to echo."""
    if char in BACKSPACE:
        if typed:
            typed.pop()
            return "\b \b"
        return ""
    if char.isprintable() and len(typed) < MAX_LINE:
        typed.append(char)
        return char
    return ""
