"""The inline approval prompt on guardctl's own terminal, and the panel both prompts show.

The answer is read from `/dev/tty`, never from stdin: the agent owns stdin (asciinema's
recorder opens /dev/tty for the same reason). Type-ahead is discarded before asking, so
keys sent earlier cannot answer a question not yet shown.
"""

from __future__ import annotations

import contextlib
import os
import select
import termios
import time
import tty
from collections.abc import Callable, Iterator
from typing import IO

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from guardctl.approvals.queue import Outcome, Request, seconds_text
from guardctl.env import Environment
from guardctl.recording.audit import Approver

TTY_PATH = "/dev/tty"
# how often a wait for a key wakes up to check its deadline
KEY_SLICE = 0.2
# after a lone ESC, how long the rest of an escape sequence may take to arrive
ESCAPE_WAIT = 0.05
# other keys pressed while a prompt waits for an accepted one, beyond one per KEY_SLICE
MAX_IGNORED_KEYS = 1000


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def open_terminal(env: Environment) -> int | None:
    """A read-write fd of `/dev/tty` when a person is at guardctl's own terminal, else None.

    The exact test: stdin and stderr are both terminals, and `/dev/tty` (the controlling
    terminal) opens. An agent's shell tool usually gives pipes (not a tty) and often no
    controlling terminal at all; then the request is queued for `guardctl approvals`.
    """
    if not (_isatty(env.stdin) and _isatty(env.stderr)):
        return None
    if env.caller is not None:
        # a broker's worker has no terminal of its own: it may ask on the terminal its
        # caller passed, and only when the caller is an approver (an agent must never be
        # shown a question it could answer itself)
        return os.dup(env.stdin.fileno()) if env.caller.is_approver else None
    try:
        return os.open(TTY_PATH, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return None


# --------------------------------------------------------------------------- showing


def shown(text: str) -> str:
    """`text` with control characters spelled out: an escape sequence in a command line
    must not redraw the screen to show the human something other than what will run."""
    return "".join(c if c.isprintable() or c == "\n" else repr(c)[1:-1] for c in text)


def _lines(items: tuple[str, ...] | list[str], empty: str) -> Text:
    return Text("\n".join(shown(i) for i in items) if items else empty)


def request_grid(request: Request, now: float) -> Table:
    """Who asked, the command, how it was read, its rules, context, cluster, namespaces,
    risks and time left: the part of a request a human must always see. Plain text (no
    markup)."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    rules = [f"{rule}: {reason}" for rule, reason in request.rules]
    namespaces = [n or "(context default)" for n in request.namespaces]
    rows: list[tuple[str, Text]] = [
        *([("asked by", Text(shown(request.requester)))] if request.requester else []),
        ("command", Text(shown(request.line))),
        ("reading", _lines(request.readings, "-")),
        ("rules", _lines(rules, "(none: guardctl could not fully understand the line)")),
        ("context", Text(shown(request.context or "(no guardctl config)"))),
        ("cluster", Text(shown(request.cluster or "(unknown)"))),
        ("namespace", _lines(namespaces, "-")),
        ("risks", _lines(request.risks, "none found")),
    ]
    if request.problems:
        rows.append(("not understood", _lines(request.problems, "")))
    rows.append(("waits", Text(f"{max(0, int(request.expires - now))} s more")))
    for label, value in rows:
        grid.add_row(label, value)
    return grid


def request_details(request: Request) -> Text | None:
    """The long part of a request, which a view may scroll: the `-f -` manifest and the
    diff (or why there is none); None when it has neither."""
    parts: list[Text] = []
    if request.manifest is not None:
        parts += [Text("manifest (from stdin, masked):", style="bold"),
                  Text(shown(request.manifest))]
    if request.diff is not None:
        parts += [Text("kubectl diff (server side):", style="bold"), Text(shown(request.diff))]
    return Text("\n").join(parts) if parts else None


def request_panel(request: Request, now: float, title: str = "approval needed") -> Panel:
    """Everything a human needs to decide on `request`; all text is plain (no markup)."""
    details = request_details(request)
    parts: list[Table | Text] = [request_grid(request, now)]
    if details is not None:
        parts += [Text(""), details]
    return Panel(Group(*parts), title=title, title_align="left")


# --------------------------------------------------------------------------- keys


@contextlib.contextmanager
def cbreak(fd: int) -> Iterator[None]:
    """Keys arrive one at a time without echo; Ctrl-C still interrupts. Restored on exit."""
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd, termios.TCSANOW)
        mode = termios.tcgetattr(fd)
        mode[3] &= ~termios.ECHO
        termios.tcsetattr(fd, termios.TCSANOW, mode)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


class Keys:
    """Key presses from a terminal fd in cbreak mode, one at a time.

    One read may hold several keys (fast typing, a paste): they are kept and handed out
    in order, so an answer typed quickly is never half lost.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buffer = b""

    def next(self, timeout: float) -> bytes | None:
        """The next key (an arrow is one multi-byte key), or None after `timeout` seconds."""
        if not self._buffer and not self._fill(timeout):
            return None
        if self._buffer == b"\x1b":
            self._fill(ESCAPE_WAIT)  # the rest of an arrow key may be a moment behind
        size = _key_size(self._buffer)
        key, self._buffer = self._buffer[:size], self._buffer[size:]
        return key

    def waiting(self) -> bool:
        """Whether a key is already there (typed ahead, pasted): a view may draw once after
        the last of them instead of after each."""
        return bool(self._buffer) or bool(select.select([self.fd], [], [], 0)[0])

    def discard(self) -> None:
        """Drop keys typed so far, kept here and in the terminal: they were meant for what
        was on screen before."""
        self._buffer = b""
        with contextlib.suppress(termios.error):
            termios.tcflush(self.fd, termios.TCIFLUSH)

    def _fill(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if not ready:
            return False
        data = os.read(self.fd, 256)
        if not data:
            raise EOFError("the terminal was closed")
        self._buffer += data
        return True


def _key_size(buffer: bytes) -> int:
    """Bytes of the first key: `ESC [ … final` and `ESC O x` are one key, else one byte."""
    if buffer[:2] == b"\x1b[":
        final = next((i for i in range(2, len(buffer)) if 0x40 <= buffer[i] <= 0x7E), None)
        return final + 1 if final is not None else len(buffer)
    if buffer[:2] == b"\x1bO" and len(buffer) >= 3:
        return 3
    return 1


def wait_for_key(
    keys: Keys, accept: frozenset[bytes], deadline: float, clock: Callable[[], float]
) -> bytes | None:
    """The first accepted key before `deadline` (by `clock`), or None; others are ignored."""
    # bounded in count too: each turn waits up to KEY_SLICE or consumes a key
    for _ in range(int((deadline - clock()) / KEY_SLICE) + MAX_IGNORED_KEYS):
        left = deadline - clock()
        if left <= 0:
            return None
        key = keys.next(min(KEY_SLICE, left))
        if key is not None and key.lower() in accept:
            return key.lower()
    return None


def terminal_name(fd: int) -> str | None:
    try:
        return os.ttyname(fd)
    except OSError:
        return None


def current_user(env: Environment | None = None) -> str:
    """Who answers: the broker's caller, else this process's user, by the kernel's uid
    (never $USER or $LOGNAME, which the environment's owner sets)."""
    if env is not None and env.caller is not None:
        return env.caller.user
    from guardctl.accounts import user_name

    return user_name(os.getuid())


# --------------------------------------------------------------------------- asking


def ask(
    fd: int, request: Request, timeout: float, *, clock: Callable[[], float] = time.time,
    user: str | None = None,
) -> Outcome:
    """Show `request` on the terminal `fd` (which this closes) and wait for `y` or `n`."""
    name = terminal_name(fd)
    with os.fdopen(fd, "w", encoding="utf-8", errors="replace", closefd=True) as out:
        console = Console(file=out, highlight=False, markup=False)
        console.print(request_panel(request, clock()))
        question = f"Approve this command? [y/n] (declined after {seconds_text(timeout)}) "
        console.print(question, end="")
        out.flush()
        deadline = clock() + timeout
        termios.tcflush(fd, termios.TCIFLUSH)  # type-ahead must not answer
        with cbreak(fd):
            key = wait_for_key(Keys(fd), frozenset({b"y", b"n"}), deadline, clock)
        console.print({b"y": "yes", b"n": "no", None: "timed out"}[key])
    if key is None:
        return Outcome(False, None, f"timed out after {seconds_text(timeout)}", "timeout")
    approver = Approver(user=user or current_user(), tty=name, at=clock())
    if key == b"y":
        return Outcome(True, approver, "approved once", "inline")
    return Outcome(False, approver, "declined at the terminal", "inline")
