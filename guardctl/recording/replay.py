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
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, NamedTuple

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


class Extent(NamedTuple):
    """How many events a replay holds and how long it plays (seconds, idle limit and speed
    applied): the "of N" of the position shown while paused."""

    events: int
    duration: float


UNKNOWN = Extent(0, 0.0)


def extent(frames: Iterable[Frame]) -> Extent:
    count, last = 0, 0.0
    for at, _ in frames:
        count, last = count + 1, at
    return Extent(count, last)


def with_prompts(head: Mapping[str, object], events: Iterable[cast.Event]) -> Iterator[cast.Event]:
    """The events, with the header's command as a command marker first when the cast does
    not begin with one (casts recorded before each invocation began with its command)."""
    command = head.get("command")
    first = True
    for event in events:
        if first and isinstance(command, str) and cast.command_of(event.data) is None:
            yield cast.Event(event.time, cast.MARKER, cast.command_label(command))
        first = False
        yield event


def prompt_line(command: str, color: bool) -> str:
    """The prompt line a replay shows for a command marker (ends with "\\r\\n")."""
    command = cast.onlcr(command)  # a line with a quoted newline stays readable
    if color:
        return f"\x1b[1;32m$\x1b[0m \x1b[1m{command}\x1b[0m\r\n"
    return f"$ {command}\r\n"


def clock_text(seconds: float) -> str:
    minutes, rest = divmod(max(0.0, seconds), 60)
    return f"{int(minutes)}:{rest:04.1f}"


KEYS_HINT = "space play . step ] next marker q quit"


def status_text(
    position: int, at: float, total: Extent, marker: str | None, width: int = 200
) -> str:
    """The line shown while paused, `paused 3/12 0:01.5/0:09.0 | $ kubectl get pods`, and
    the keys when they fit in `width` columns too (the marker matters more)."""
    text = f"paused {position}/{total.events} {clock_text(at)}/{clock_text(total.duration)}"
    if marker is not None:
        text += f" | {marker}"
    with_keys = f"{text} | {KEYS_HINT}"
    return with_keys if len(with_keys) <= width else text


class Player:
    """Plays frames: writes output events at their time, and a prompt line at each command
    marker; markers are where `]` stops.

    `keys(timeout)` returns one key pressed within `timeout` seconds, or None; without it
    the player just sleeps. `play` returns OK at the end or on `q`, INTERRUPTED on Ctrl-C.
    While paused (space, a step, a stop at a marker) `status` gets the position line
    (`status_text`, `width()` columns wide at most), and None when playback goes on.
    """

    def __init__(
        self,
        write: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        keys: Keys | None = None,
        *,
        status: Callable[[str | None], None] | None = None,
        total: Extent = UNKNOWN,
        color: bool = False,
        width: Callable[[], int] = lambda: 200,
    ) -> None:
        self._write = write
        self._clock = clock
        self._sleep = sleep
        self._keys = keys
        self._status = status
        self._total = total
        self._color = color
        self._width = width  # of the status line, asked each time (the terminal may resize)
        self._origin = 0.0  # the clock reading at playback time 0
        self._paused = False
        self._paused_at = 0.0  # the playback time where the pause holds
        self._seeking = False  # after `]`: show events at once until the next marker
        self._position = 0  # events shown
        self._marker: str | None = None  # the last marker shown
        self._line_open = False  # the last text shown did not end a line

    @property
    def paused(self) -> bool:
        return self._paused

    def play(self, frames: Iterable[Frame]) -> ExitStatus:
        self._origin = self._clock()
        for at, event in frames:
            status = self._wait(at)
            if status is not None:
                return status
            self._show(at, event)
        return ExitStatus.OK

    def _show(self, at: float, event: cast.Event) -> None:
        command = cast.command_of(event.data) if event.code == cast.MARKER else None
        if command is not None:
            self._text(("\r\n" if self._line_open else "") + prompt_line(command, self._color))
        elif event.code == cast.OUTPUT:
            self._text(event.data)
        self._position += 1
        if event.code == cast.MARKER:
            self._marker = event.data
        if self._paused:  # a step
            self._paused_at = at
            self._tell()
        elif self._seeking and event.code == cast.MARKER:
            self._seeking, self._paused, self._paused_at = False, True, at
            self._tell()

    def _text(self, text: str) -> None:
        if text:
            self._write(text)
            self._line_open = not text.endswith("\n")

    def _tell(self) -> None:
        """Show where a paused replay is, or (running) take that line away."""
        if self._status is not None:
            shown = status_text(
                self._position, self._paused_at, self._total, self._marker, self._width()
            )
            self._status(shown if self._paused else None)

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
            self._tell()
        elif key == PAUSE:
            self._paused, self._paused_at = True, self._clock() - self._origin
            self._tell()
        elif key == NEXT_MARKER:
            if self._paused:
                self._paused = False
                self._tell()
            self._seeking = True
        return None


def resolve(target: str, env: Environment) -> Path:
    """A cast path; a cast's name in the state folder (`S.cast`, an overflow part `S~2`); or
    the main cast of the session a person's id names (`sessions.match_session`: the id, its
    start, a Claude Code session id)."""
    from guardctl.recording.sessions import match_session

    path = Path(target).expanduser()
    if path.is_file():
        return path
    folder = recorder.cast_dir(env.state_dir)
    names = sorted(p.name for p in folder.glob(f"*{recorder.SUFFIX}")) if folder.is_dir() else []
    named = target if target.endswith(recorder.SUFFIX) else target + recorder.SUFFIX
    if named in names:
        return folder / named
    missing = (
        f"no cast file or recorded session named {target!r} (a cast removed by `guardctl "
        "sessions prune` is gone; `guardctl sessions --session ID` still lists its invocations)"
    )
    session = match_session(target, {recorder.session_of(n) for n in names}, missing)
    found = recorder.session_cast(env.state_dir, session)
    if not found.is_file():
        raise UsageError(missing)
    return found


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
                         f"others are in {names}: replay those by name\n")
    try:
        with open(path, encoding="utf-8", newline="\n") as f:
            head = cast.read_header(f.readline())
            limit = idle_limit if idle_limit is not None else _header_limit(head)
            total = extent(schedule(with_prompts(head, cast.read_events(f)), speed, limit))
            f.seek(0)
            f.readline()
            frames = schedule(with_prompts(head, cast.read_events(f)), speed, limit)
            return int(_run(frames, total, env, clock, sleep))
    except (cast.CastError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not a playable asciicast v2 file: {exc}") from None


def write_page(
    target: str,
    env: Environment,
    out: Path,
    player: str | None = None,
    speed: float = 1.0,
    idle_limit: float | None = None,
) -> int:
    """`guardctl replay --html FILE`: write a page that plays the cast with the asciinema
    player (guardctl.recording.page); the file is private (0600), as the casts are. FILE
    `-` is stdout: through a broker it is the only choice, since the broker does not write
    files, under its own account, where a caller says."""
    from guardctl.atomic import write_atomic
    from guardctl.recording import page

    if speed <= 0:
        raise UsageError(f"--speed must be positive, not {speed}")
    to_stdout = str(out) == "-"
    if env.caller is not None and not to_stdout:
        raise UsageError("through the broker, the page goes to stdout: "
                         f"`guardctl replay {target} --html - > {out}`")
    source = page.player_source(player)
    path = resolve(target, env)
    try:
        text = path.read_text(encoding="utf-8")
        lines = cast.split_lines(text)
        head = cast.read_header(lines[0] if lines else "")
        limit = idle_limit if idle_limit is not None else _header_limit(head)
        found = page.commands(schedule(cast.read_events(lines[1:]), 1.0, limit))
    except (cast.CastError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not a playable asciicast v2 file: {exc}") from None
    options: dict[str, object] = {"speed": speed} if speed != 1.0 else {}
    if idle_limit is not None:
        options["idleTimeLimit"] = idle_limit
    made = page.page(text, head, found, source, options)
    if to_stdout:
        env.stdout.write(made)
        env.stdout.flush()
        return int(ExitStatus.OK)
    try:
        write_atomic(out, made)
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror or exc}") from None
    env.stderr.write(f"guardctl: wrote {out}: {path.name}, {len(found)} commands, player "
                     f"{source.base}\n")
    return int(ExitStatus.OK)


def _header_limit(head: dict[str, object]) -> float | None:
    value = head.get("idle_time_limit")
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def terminal_size(fd: int) -> os.terminal_size:
    try:
        return os.get_terminal_size(fd)
    except OSError:
        return os.terminal_size((80, 24))


def status_line(write: Callable[[str], None], fd: int) -> Callable[[str | None], None]:
    """Draws a paused replay's status on the terminal's last row, reversed, and restores
    the cursor; None clears that row (what the replay had drawn there is lost)."""

    def show(text: str | None) -> None:
        size = terminal_size(fd)
        body = f"\x1b[7m{text[: max(1, size.columns - 1)]}\x1b[0m" if text else ""
        write(f"\x1b7\x1b[{size.lines};1H\x1b[2K{body}\x1b8")

    return show


def _run(
    frames: Iterable[Frame],
    total: Extent,
    env: Environment,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> ExitStatus:
    def write(text: str) -> None:
        env.stdout.write(text)
        env.stdout.flush()

    out_fd = _tty_fd(env.stdout)
    color = out_fd is not None and "NO_COLOR" not in env.environ
    fd = _tty_fd(env.stdin)
    if fd is None:
        return Player(write, clock, sleep, color=color).play(frames)
    with keyboard_mode(fd):
        if out_fd is None:  # keys, but no terminal to show where a pause is
            return Player(write, clock, sleep, tty_keys(fd)).play(frames)
        shown_on: int = out_fd
        status = status_line(write, shown_on)
        player = Player(
            write, clock, sleep, tty_keys(fd), status=status, total=total, color=color,
            width=lambda: terminal_size(shown_on).columns - 1,
        )
        try:
            return player.play(frames)
        finally:
            if player.paused:
                status(None)  # quit while paused: the status line goes
