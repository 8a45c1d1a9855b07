"""`guardctl replay`: play a recorded cast in the terminal with its timing.

Timing is a pure generator (`schedule`) over the cast's events; `Player` walks it with an
injectable clock, sleep and key source, so tests drive it on a fake clock. Keys, read from
the terminal only when stdin is a tty: space pauses and resumes, `.` steps one event while
paused, `]` jumps to the next marker (and pauses there), `q` or Ctrl-C quits. The terminal
is put in a no-echo, non-canonical mode without signals (so Ctrl-C arrives as a key, not a
KeyboardInterrupt mid-write) and restored on every path. Output processing stays on, so a
bare "\\n" in a cast still starts a new line.
"""

from __future__ import annotations

import os
import select
import termios
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from guardctl.env import Environment
from guardctl.errors import UsageError
from guardctl.recording import cast, recorder
from guardctl.status import ExitStatus

PAUSE, STEP, NEXT_MARKER, QUIT, INTERRUPT = " ", ".", "]", "q", "\x03"
# a paused player gives up after this long: every loop is bounded in time
MAX_PAUSE = 3600.0

Frame = tuple[float, cast.Event]
Keys = Callable[[float], "str | None"]


def schedule(
    events: Iterable[cast.Event], speed: float = 1.0, idle_limit: float | None = None
) -> Iterator[Frame]:
    """(playback time, event) pairs: each gap between events capped at `idle_limit`
    (recorded seconds), then divided by `speed`."""
    if speed <= 0:
        raise ValueError("speed must be positive")
    played = 0.0
    previous = 0.0
    for event in events:
        gap = max(0.0, event.time - previous)
        if idle_limit is not None:
            gap = min(gap, idle_limit)
        played += gap / speed
        previous = event.time
        yield played, event


class Player:
    """Plays frames: writes output events at their time; markers are where `]` stops.

    `keys(timeout)` returns one key pressed within `timeout` seconds, or None; without it
    the player just sleeps. `play` returns OK at the end or on `q`, INTERRUPTED on Ctrl-C.
    """

    def __init__(
        self,
        write: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        keys: Keys | None = None,
    ) -> None:
        self._write = write
        self._clock = clock
        self._sleep = sleep
        self._keys = keys
        self._origin = 0.0  # the clock reading at playback time 0
        self._paused = False
        self._paused_at = 0.0  # the playback time where the pause holds
        self._seeking = False  # after `]`: show events at once until the next marker

    def play(self, frames: Iterable[Frame]) -> ExitStatus:
        self._origin = self._clock()
        for at, event in frames:
            status = self._wait(at)
            if status is not None:
                return status
            self._show(at, event)
        return ExitStatus.OK

    def _show(self, at: float, event: cast.Event) -> None:
        if event.code == cast.OUTPUT:
            self._write(event.data)
        if self._paused:  # a step
            self._paused_at = at
        elif self._seeking and event.code == cast.MARKER:
            self._seeking, self._paused, self._paused_at = False, True, at

    def _wait(self, at: float) -> ExitStatus | None:
        """Return None when the event at playback time `at` is due, or the status to end
        with (a key, or a pause nobody ended within MAX_PAUSE)."""
        while not self._seeking:
            if self._paused:
                key = self._keys(MAX_PAUSE) if self._keys else None
                if key is None:
                    return ExitStatus.OK
                if key == STEP:
                    return None
            else:
                delay = self._origin + at - self._clock()
                if delay <= 0:
                    return None
                # the wait ends with the delay, whatever the clock says then: a clock that
                # does not move (or moves slowly) must not spin this loop
                if self._keys is None:
                    self._sleep(delay)
                    return None
                key = self._keys(delay)
                if key is None:
                    return None
            status = self._key(key)
            if status is not None:
                return status
        return None

    def _key(self, key: str) -> ExitStatus | None:
        if key == QUIT:
            return ExitStatus.OK
        if key == INTERRUPT:
            return ExitStatus.INTERRUPTED
        if key == PAUSE and self._paused:
            self._paused, self._origin = False, self._clock() - self._paused_at
        elif key == PAUSE:
            self._paused, self._paused_at = True, self._clock() - self._origin
        elif key == NEXT_MARKER:
            self._seeking, self._paused = True, False
        return None


def resolve(target: str, env: Environment) -> Path:
    """A cast path, or a session id's cast in the state folder."""
    path = Path(target).expanduser()
    if path.is_file():
        return path
    try:
        session = recorder.session_cast(env.state_dir, target)
    except UsageError:
        session = None
    if session is not None and session.is_file():
        return session
    raise UsageError(
        f"no cast file or recorded session named {target!r} (a cast removed by `guardctl "
        "sessions prune` is gone; `guardctl sessions --session ID` still lists its invocations)"
    )


def overflow_parts(path: Path) -> list[Path]:
    """The other parts of the session whose main cast is `path` (invocations that ran while
    another held the main cast), in order."""
    session = path.name.removesuffix(recorder.SUFFIX)
    found = []
    for candidate in path.parent.glob(f"{session}~*{recorder.SUFFIX}"):
        number = candidate.name[len(session) + 1 : -len(recorder.SUFFIX)]
        if number.isdigit():
            found.append((int(number), candidate))
    return [p for _, p in sorted(found)]


def tty_keys(fd: int) -> Keys:
    """A key source reading single characters from `fd` (a tty in `keyboard_mode`)."""

    def read(timeout: float) -> str | None:
        ready, _, _ = select.select([fd], [], [], max(0.0, timeout))
        if not ready:
            return None
        data = os.read(fd, 1)
        return data.decode("latin-1") if data else QUIT  # EOF on the tty: stop playing

    return read


@contextmanager
def keyboard_mode(fd: int) -> Iterator[None]:
    """No echo, no line editing, no signal keys; restores the old mode on every exit."""
    saved = termios.tcgetattr(fd)
    mode = termios.tcgetattr(fd)
    mode[3] &= ~(termios.ICANON | termios.ECHO | termios.ISIG)
    mode[6][termios.VMIN], mode[6][termios.VTIME] = 1, 0
    termios.tcsetattr(fd, termios.TCSAFLUSH, mode)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _tty_fd(stream: IO[str]) -> int | None:
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    return fd if os.isatty(fd) else None


def play(
    target: str,
    env: Environment,
    speed: float = 1.0,
    idle_limit: float | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Play a cast (path or session id) to env.stdout; the CLI's `guardctl replay`.

    `idle_limit` defaults to the cast header's `idle_time_limit`.
    """
    if speed <= 0:
        raise UsageError(f"--speed must be positive, not {speed}")
    path = resolve(target, env)
    parts = overflow_parts(path) if path.name != Path(target).name else []
    if parts:
        names = ", ".join(p.name for p in parts)
        env.stderr.write(f"guardctl: invocations of {target} that ran at the same time as "
                         f"others are in {names}: replay those by path\n")
    try:
        with open(path, encoding="utf-8", newline="\n") as f:
            head = cast.read_header(f.readline())
            limit = idle_limit if idle_limit is not None else _header_limit(head)
            frames = schedule(cast.read_events(f), speed, limit)
            return int(_run(frames, env, clock, sleep))
    except (cast.CastError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not a playable asciicast v2 file: {exc}") from None


def _header_limit(head: dict[str, object]) -> float | None:
    value = head.get("idle_time_limit")
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def _run(
    frames: Iterable[Frame],
    env: Environment,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> ExitStatus:
    def write(text: str) -> None:
        env.stdout.write(text)
        env.stdout.flush()

    fd = _tty_fd(env.stdin)
    if fd is None:
        return Player(write, clock, sleep).play(frames)
    with keyboard_mode(fd):
        return Player(write, clock, sleep, tty_keys(fd)).play(frames)
