"""Replay: timing on a fake clock, keys, resolving session ids, a real pty."""

from __future__ import annotations

import io
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from guardctl.env import Environment
from guardctl.errors import UsageError
from guardctl.recording import cast, recorder, replay
from guardctl.status import ExitStatus

REPO = Path(__file__).resolve().parent.parent
E = cast.Event


class FakeTime:
    """A clock that only moves when the player sleeps or a key arrives."""

    def __init__(self, keys: dict[float, str] | None = None) -> None:
        self.now = 100.0
        self.keys = sorted((100.0 + at, key) for at, key in (keys or {}).items())
        self.shown: list[tuple[float, str]] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def key(self, timeout: float) -> str | None:
        if self.keys and self.keys[0][0] <= self.now + timeout:
            at, key = self.keys.pop(0)
            self.now = max(self.now, at)
            return key
        self.now += timeout
        return None

    def write(self, text: str) -> None:
        self.shown.append((round(self.now - 100.0, 6), text))


EVENTS = [E(0.5, "o", "a"), E(1.0, "m", "mark"), E(10.0, "o", "b"), E(10.5, "o", "c")]


@pytest.mark.parametrize(
    ("speed", "idle", "times"),
    [
        (1.0, None, [0.5, 1.0, 10.0, 10.5]),
        (2.0, None, [0.25, 0.5, 5.0, 5.25]),
        (1.0, 2.0, [0.5, 1.0, 3.0, 3.5]),  # the 9 s gap is capped at 2 s
        (10.0, 2.0, [0.05, 0.1, 0.3, 0.35]),  # capped in recorded time, then sped up
    ],
)
def test_schedule(speed: float, idle: float | None, times: list[float]) -> None:
    frames = list(replay.schedule(EVENTS, speed, idle))
    assert [round(at, 6) for at, _ in frames] == times
    assert [e for _, e in frames] == EVENTS


def test_schedule_rejects_a_non_positive_speed() -> None:
    with pytest.raises(ValueError):
        list(replay.schedule(EVENTS, 0))


def _play(keys: dict[float, str] | None, speed: float = 1.0) -> tuple[ExitStatus, FakeTime]:
    fake = FakeTime(keys)
    source = fake.key if keys is not None else None
    player = replay.Player(fake.write, fake.clock, fake.sleep, source)
    return player.play(replay.schedule(EVENTS, speed)), fake


@pytest.mark.parametrize(
    ("keys", "status", "shown"),
    [
        (None, ExitStatus.OK, [(0.5, "a"), (10.0, "b"), (10.5, "c")]),
        ({}, ExitStatus.OK, [(0.5, "a"), (10.0, "b"), (10.5, "c")]),
        # paused at 2 s for 3 s: the rest comes 3 s later
        ({2.0: " ", 5.0: " "}, ExitStatus.OK, [(0.5, "a"), (13.0, "b"), (13.5, "c")]),
        # paused at 2 s, a step shows the next event at once; resumed at 6 s, the next
        # one keeps its 0.5 s distance
        ({2.0: " ", 3.0: ".", 6.0: " "}, ExitStatus.OK, [(0.5, "a"), (3.0, "b"), (6.5, "c")]),
        ({0.2: "q"}, ExitStatus.OK, []),
        ({0.7: "\x03"}, ExitStatus.INTERRUPTED, [(0.5, "a")]),
        # `]` jumps to the marker and pauses there; space resumes from the marker's time
        ({0.1: "]", 2.0: " "}, ExitStatus.OK, [(0.1, "a"), (11.0, "b"), (11.5, "c")]),
    ],
)
def test_player_keys_on_a_fake_clock(
    keys: dict[float, str] | None, status: ExitStatus, shown: list[tuple[float, str]]
) -> None:
    result, fake = _play(keys)
    assert result == status
    assert fake.shown == shown


def test_a_pause_nobody_ends_stops_playback() -> None:
    result, fake = _play({1.0: " "})
    assert result == ExitStatus.OK
    assert fake.shown == [(0.5, "a")]
    assert fake.now - 100.0 == pytest.approx(1.0 + replay.MAX_PAUSE)


@pytest.fixture
def session_cast(isolated_home: Path) -> Path:
    with recorder.open_recording(isolated_home, "s1") as rec:
        rec.marker("decision: allow")
        rec.output(b"hello from the cast\r\n")
        rec.finish()
    return rec.path


def _env(home: Path) -> tuple[Environment, io.StringIO]:
    out = io.StringIO()
    env = Environment(
        stdin=io.StringIO(), stdout=out, stderr=io.StringIO(),
        environ={"GUARDCTL_HOME": str(home)}, home=home,
    )
    return env, out


def test_play_a_session_by_id_without_a_tty(isolated_home: Path, session_cast: Path) -> None:
    env, out = _env(isolated_home)
    slept: list[float] = []
    status = replay.play("s1", env, speed=4, clock=lambda: 0.0, sleep=slept.append)
    assert status == 0
    assert out.getvalue() == "hello from the cast\r\n"


def test_play_a_path(isolated_home: Path, session_cast: Path) -> None:
    env, out = _env(isolated_home)
    assert replay.play(str(session_cast), env, clock=lambda: 0.0, sleep=lambda s: None) == 0
    assert out.getvalue() == "hello from the cast\r\n"


@pytest.mark.parametrize("target", ["nope", "../etc/passwd", ""])
def test_unknown_targets_are_usage_errors(isolated_home: Path, target: str) -> None:
    with pytest.raises(UsageError, match="no cast file or recorded session"):
        replay.play(target, _env(isolated_home)[0])


def test_a_file_that_is_not_a_cast_is_a_usage_error(isolated_home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.cast"
    bad.write_text('{"version": 2, "width": 80, "height": 24}\nnot json\n[1.0, "o", "x"]\n')
    with pytest.raises(UsageError, match="not a playable asciicast"):
        replay.play(str(bad), _env(isolated_home)[0], sleep=lambda s: None)


def test_speed_must_be_positive(isolated_home: Path, session_cast: Path) -> None:
    with pytest.raises(UsageError, match="--speed"):
        replay.play("s1", _env(isolated_home)[0], speed=0)


@contextmanager
def _spawn(args: list[str], home: Path) -> Iterator[Any]:
    pexpect = pytest.importorskip("pexpect")
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from guardctl.env import Environment
        from guardctl.recording.replay import play
        sys.exit(play(sys.argv[1], Environment(), speed=float(sys.argv[2])))
        """
    )
    child = pexpect.spawn(
        sys.executable, ["-c", script, *args], env={"GUARDCTL_HOME": str(home), "PATH": ""},
        timeout=20, encoding="utf-8",
    )
    try:
        yield child
    finally:
        child.close(force=True)


def _slow_cast(home: Path) -> Path:
    path = home / "slow.cast"
    lines = [cast.encode_header(cast.header(80, 24, 0))]
    lines += [cast.encode_event(0.1, "o", "first line\r\n"), cast.encode_event(0.2, "m", "m1")]
    lines += [cast.encode_event(5.0 + n, "o", f"late {n}\r\n") for n in range(3)]
    path.write_text("".join(lines), encoding="utf-8")
    return path


def test_pty_plays_at_speed(isolated_home: Path, session_cast: Path) -> None:
    with _spawn(["s1", "10"], isolated_home) as child:
        child.expect("hello from the cast")
        child.expect(pexpect_eof())
        child.close()
        assert child.exitstatus == 0


def test_pty_q_quits_and_restores_the_terminal(isolated_home: Path) -> None:
    path = _slow_cast(isolated_home)
    with _spawn([str(path), "1"], isolated_home) as child:
        child.expect("first line")
        child.send("q")
        child.expect(pexpect_eof())
        child.close()
        assert child.exitstatus == 0
        assert "late" not in child.before


def test_pty_ctrl_c_and_marker_jump(isolated_home: Path) -> None:
    path = _slow_cast(isolated_home)
    with _spawn([str(path), "1"], isolated_home) as child:
        child.expect("first line")
        child.send("]")  # to the marker, paused there
        child.send(".")  # one step: the first late line
        child.expect("late 0")
        child.send("\x03")
        child.expect(pexpect_eof())
        child.close()
        assert child.exitstatus == ExitStatus.INTERRUPTED
        assert "late 1" not in child.before


def pexpect_eof() -> object:
    import pexpect

    return pexpect.EOF


def _two_parts(home: Path) -> None:
    """Session s1: "main" in its cast, "concurrent" in the part s1~2, recorded meanwhile."""
    with recorder.open_recording(home, "s1") as busy:
        with recorder.open_recording(home, "s1") as other:
            other.output(b"concurrent\r\n")
            other.finish()
        busy.output(b"main\r\n")
        busy.finish()


def test_playing_a_session_names_its_overflow_parts(isolated_home: Path) -> None:
    """Invocations that ran at once went to parts (issue 13): replay by id says where."""
    _two_parts(isolated_home)
    env, out = _env(isolated_home)
    assert replay.play("s1", env, clock=lambda: 0.0, sleep=lambda s: None) == 0
    assert out.getvalue() == "main\r\n"
    assert isinstance(env.stderr, io.StringIO)
    assert "s1~2.cast: replay those by name" in env.stderr.getvalue()


# --------------------------------------------------------------------------- issue 14


SESSION_EVENTS = [
    E(0.0, "m", "$ kubectl get pods"), E(0.1, "m", "decision: allow"),
    E(0.5, "o", "NAME  READY\r\nweb   1/1"),  # no line end: the next prompt starts a line
    E(2.0, "m", "$ kubectl delete ns prod"), E(2.1, "m", "decision: deny by delete-namespace"),
    E(2.2, "o", "guardctl: denied\r\n"),
]


def test_each_command_is_shown_as_a_prompt_line() -> None:
    fake = FakeTime()
    replay.Player(fake.write, fake.clock, fake.sleep).play(replay.schedule(SESSION_EVENTS))
    assert "".join(text for _, text in fake.shown) == (
        "$ kubectl get pods\r\nNAME  READY\r\nweb   1/1"
        "\r\n$ kubectl delete ns prod\r\nguardctl: denied\r\n"
    )
    assert fake.shown[0][0] == 0.0 and fake.shown[2][0] == 2.0  # each at its marker's time


def test_prompt_lines_in_color() -> None:
    assert replay.prompt_line("kubectl get pods", True) == (
        "\x1b[1;32m$\x1b[0m \x1b[1mkubectl get pods\x1b[0m\r\n"
    )


def test_paused_and_stepping_show_position_time_and_marker() -> None:
    fake = FakeTime({0.3: " ", 1.0: ".", 2.0: ".", 3.0: "]", 5.0: " "})
    told: list[tuple[float, str | None]] = []
    frames = list(replay.schedule(SESSION_EVENTS))
    player = replay.Player(
        fake.write, fake.clock, fake.sleep, fake.key,
        status=lambda text: told.append((round(fake.now - 100.0, 6), text)),
        total=replay.extent(frames),
    )
    assert player.play(frames) == ExitStatus.OK
    keys = "space play . step ] next marker q quit"
    assert told == [
        (0.3, f"paused 2/6 0:00.3/0:02.2 | decision: allow | {keys}"),
        (1.0, f"paused 3/6 0:00.5/0:02.2 | decision: allow | {keys}"),  # the output stepped
        (2.0, f"paused 4/6 0:02.0/0:02.2 | $ kubectl delete ns prod | {keys}"),
        (3.0, None),  # `]` plays on to the next marker, where it pauses again
        (3.0, f"paused 5/6 0:02.1/0:02.2 | decision: deny by delete-namespace | {keys}"),
        (5.0, None),
    ]


def test_a_cast_without_command_markers_gets_its_headers_command() -> None:
    events = [E(0.1, "m", "decision: allow"), E(0.2, "o", "x")]
    shown = list(replay.with_prompts({"command": "kubectl version"}, events))
    assert shown == [E(0.1, "m", "$ kubectl version"), *events]
    assert list(replay.with_prompts({"command": "kubectl version"}, SESSION_EVENTS)) == (
        SESSION_EVENTS
    )
    assert list(replay.with_prompts({}, events)) == events


def _session_cast(home: Path) -> Path:
    path = home / "session.cast"
    lines = [cast.encode_header(cast.header(80, 24, 0))]
    lines += [cast.encode_event(e.time, e.code, e.data) for e in SESSION_EVENTS]
    lines += [cast.encode_event(30.0, "o", "the end\r\n")]
    path.write_text("".join(lines), encoding="utf-8")
    return path


def test_pty_pause_shows_the_status_line_and_clears_it(isolated_home: Path) -> None:
    path = _session_cast(isolated_home)
    with _spawn([str(path), "1"], isolated_home) as child:
        child.expect("guardctl: denied")
        child.send(" ")
        child.expect_exact("paused 6/7")
        child.expect_exact("decision: deny by delete-namespace")
        child.send(".")
        child.expect_exact("the end")
        child.expect_exact("paused 7/7")
        child.send("q")
        child.expect(pexpect_eof())
        child.close()
        assert child.exitstatus == 0
        assert "\x1b[2K\x1b8" in child.before  # the status line was taken away


@pytest.mark.parametrize("name", ["s1~2", "s1~2.cast"])
def test_replay_plays_an_overflow_part_by_name(isolated_home: Path, name: str) -> None:
    _two_parts(isolated_home)
    env, out = _env(isolated_home)
    assert replay.play(name, env, clock=lambda: 0.0, sleep=lambda s: None) == 0
    assert out.getvalue() == "concurrent\r\n"


def test_the_status_line_drops_the_keys_before_the_marker() -> None:
    total = replay.Extent(8, 60.0)
    marker = "approval: approved by alice with guardctl approvals (approved once)"
    short = replay.status_text(7, 2.7, total, marker, width=79)
    assert short == f"paused 7/8 0:02.7/1:00.0 | {marker}"
    assert replay.status_text(7, 2.7, total, marker) == f"{short} | {replay.KEYS_HINT}"
