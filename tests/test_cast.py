"""asciicast v2 format: exact lines (golden files), tolerant reading, the streaming writer."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from guardctl.model import Action, CommandDecision, Decision, RuleHit
from guardctl.recording import cast

DATA = Path(__file__).parent / "data" / "cast"


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _deny() -> Decision:
    hit = RuleHit("delete-namespace", Action.DENY, "namespaces hold everything")
    command = CommandDecision(("kubectl", "delete", "ns", "prod"), Action.DENY, (hit,))
    return Decision(Action.DENY, "denied", (command,))


def write_golden(out: io.StringIO) -> None:
    """The scripted recording behind tests/data/cast/golden.cast."""
    clock = FakeClock()
    head = cast.header(
        100, 30, 1_700_000_000, command="kubectl delete ns prod", idle_time_limit=3.0,
        meta=cast.decision_meta("s-1", _deny()),
    )
    steps: list[tuple[float, Callable[[cast.Writer], None]]] = [
        (0.0, lambda w: w.marker(cast.command_label("kubectl delete ns prod"))),
        (0.1, lambda w: w.marker(cast.decision_label(_deny()))),
        (0.25, lambda w: w.output(b"caf\xc3")),  # "é" split after its first byte
        (0.5, lambda w: w.output(b"\xa9 \xf0\x9f")),  # a 4-byte emoji split in three writes
        (0.5, lambda w: w.output(b"\x9a")),
        (0.75, lambda w: w.output(b"\x80 done\n", stream="stderr")),  # stray continuation
        (1.0, lambda w: w.output(b"\xa2\n")),
        (1.5, lambda w: w.resize(120, 40)),
        (2.0, lambda w: w.marker(cast.approval_label("approved", "alice"))),
    ]
    with cast.Writer(out, clock, header=head) as writer:
        for at, step in steps:
            clock.now = 1000.0 + at
            step(writer)


def test_golden_cast_lines() -> None:
    out = io.StringIO()
    write_golden(out)
    assert out.getvalue() == (DATA / "golden.cast").read_text(encoding="utf-8")


def test_golden_cast_holds_whole_characters() -> None:
    text = (DATA / "golden.cast").read_text(encoding="utf-8")
    lines = cast.split_lines(text)
    output = "".join(e.data for e in cast.read_events(lines[1:]) if e.code == cast.OUTPUT)
    # stdout and stderr decode apart: the emoji completes across the stderr write, and
    # only the stray continuation byte on stderr becomes U+FFFD
    assert output == "café \ufffd done\n\U0001f6a2\n"
    assert "env" not in cast.read_header(lines[0])


def test_writer_flushes_each_event() -> None:
    flushed: list[str] = []

    class Spy(io.StringIO):
        def flush(self) -> None:
            flushed.append(self.getvalue())

    clock = FakeClock()
    writer = cast.Writer(Spy(), clock)
    writer.output(b"a")
    writer.marker("m")
    assert flushed == ['[0.0, "o", "a"]\n', '[0.0, "o", "a"]\n[0.0, "m", "m"]\n']


def test_writer_writes_nothing_until_an_event() -> None:
    out = io.StringIO()
    writer = cast.Writer(out, FakeClock(), header=cast.header(80, 24, 0))
    writer.output(b"\xe2\x82")  # half a character: nothing to write yet
    assert out.getvalue() == ""
    writer.close()  # the dangling bytes become one U+FFFD at the end
    assert out.getvalue().splitlines()[1] == '[0.0, "o", "\ufffd"]'


@pytest.mark.parametrize(
    ("onlcr", "expected"),
    [(False, "a\nb\r\n"), (True, "a\r\nb\r\r\n")],  # ONLCR turns every LF into CR LF
)
def test_writer_onlcr(onlcr: bool, expected: str) -> None:
    out = io.StringIO()
    cast.Writer(out, FakeClock(), onlcr=onlcr).output(b"a\nb\r\n")
    assert json.loads(out.getvalue())[2] == expected


def test_writer_times_start_at_offset_and_never_go_back() -> None:
    clock = FakeClock(50.0)
    out = io.StringIO()
    writer = cast.Writer(out, clock, start=7.5)
    clock.now = 51.0
    writer.output("x")
    clock.now = 49.0  # the clock stepped back
    writer.output("y")
    times = [json.loads(line)[0] for line in out.getvalue().splitlines()]
    assert times == [8.5, 8.5]


@pytest.mark.parametrize(
    ("time", "code", "data", "line"),
    [
        (0, "o", "x", '[0.0, "o", "x"]'),
        (1.23456789, "o", "é\u2028", '[1.234568, "o", "é\u2028"]'),
        (2.5, "m", "decision: allow", '[2.5, "m", "decision: allow"]'),
        (3.0, "r", "80x24", '[3.0, "r", "80x24"]'),
        (4.0, "o", "\x1b[1m\r\n\"", '[4.0, "o", "\\u001b[1m\\r\\n\\""]'),
    ],
)
def test_encode_event(time: float, code: str, data: str, line: str) -> None:
    assert cast.encode_event(time, code, data) == line + "\n"
    assert cast.decode_event(line) == cast.Event(float(round(time, 6)), code, data)


def test_header_never_carries_env() -> None:
    assert set(cast.header(80, 24, 5)) == {"version", "width", "height", "timestamp"}
    with pytest.raises(cast.CastError, match="env"):
        cast.encode_header({"version": 2, "width": 1, "height": 1, "env": {"TERM": "x"}})


@pytest.mark.parametrize(
    "line",
    ['{"version": 1, "width": 80, "height": 24}', '{"version": 2, "width": "80", "height": 24}',
     '[2]', '{"version": 2, "width": 80', ''],
)
def test_read_header_rejects(line: str) -> None:
    with pytest.raises(cast.CastError):
        cast.read_header(line)


def test_read_events_drops_a_torn_last_line_at_every_cut() -> None:
    full = cast.encode_event(0.5, "o", "first") + cast.encode_event(1.5, "o", "sécond\u2028")
    first_end = full.index("\n") + 1
    for cut in range(first_end, len(full) - 1):  # up to the whole line less its newline
        events = list(cast.read_events(cast.split_lines(full[:cut])))
        assert [e.data for e in events] == ["first"], cut
    assert [e.data for e in cast.read_events(cast.split_lines(full))] == ["first", "sécond\u2028"]


def test_read_events_accepts_a_whole_last_line_without_newline() -> None:
    lines = cast.split_lines('[0.5, "o", "a"]\n[1.0, "m", "x"]')
    assert [e.code for e in cast.read_events(lines)] == ["o", "m"]


@pytest.mark.parametrize(
    "bad",
    ['{"not": "an event"}', '[1.0, "o"]', '[-1.0, "o", "x"]', '[true, "o", "x"]',
     '[1.0, "", "x"]', '[1.0, "o", 5]', '[1.0, "o", "x"'],
)
def test_read_events_rejects_a_bad_middle_line(bad: str) -> None:
    lines = ['[0.5, "o", "a"]\n', bad + "\n", '[1.0, "o", "b"]\n']
    with pytest.raises(cast.CastError, match="line 3"):
        list(cast.read_events(lines))


def test_split_lines_cuts_only_at_newline() -> None:
    assert cast.split_lines("a\u2028b\x85c\rd\ne") == ["a\u2028b\x85c\rd\n", "e"]


@pytest.mark.parametrize(
    ("timestamp", "last", "now", "expected"),
    [
        (1000, 5.0, 1060.0, 60.0),  # a real gap of 55 s after the last event
        (1000, 5.0, 1002.0, 5.0),  # the clock is behind the cast: never go back
        ("1000", 5.0, 2000.0, 5.0),  # a header without a usable timestamp
        (None, 0.0, 2000.0, 0.0),
    ],
)
def test_resume_time(timestamp: object, last: float, now: float, expected: float) -> None:
    assert cast.resume_time({"timestamp": timestamp}, last, now) == expected


@pytest.mark.parametrize(
    ("decision", "label"),
    [
        (_deny(), "decision: deny by delete-namespace"),
        (Decision(Action.ALLOW, "fine"), "decision: allow"),
    ],
)
def test_decision_label(decision: Decision, label: str) -> None:
    assert cast.decision_label(decision) == label


def asciinema_cat(path: Path) -> str:
    """What `asciinema cat` (2.4) prints for a cast; skipped when asciinema is absent."""
    pytest.importorskip("asciinema")
    done = subprocess.run(
        [sys.executable, "-m", "asciinema", "cat", str(path)],
        capture_output=True, stdin=subprocess.DEVNULL, timeout=60, check=False,
        start_new_session=True,  # no controlling tty: asciinema must not touch ours
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.decode("utf-8")


def test_asciinema_cat_prints_the_golden_output() -> None:
    path = DATA / "golden.cast"
    lines = cast.split_lines(path.read_text(encoding="utf-8"))
    expected = "".join(e.data for e in cast.read_events(lines[1:]) if e.code == cast.OUTPUT)
    assert asciinema_cat(path) == expected


@pytest.mark.parametrize(
    ("args", "kwargs", "label"),
    [
        (("approved", "alice"), {}, "approval: approved by alice"),
        (("approved", "alice"), {"how": "queue", "reason": "approved once"},
         "approval: approved by alice with guardctl approvals (approved once)"),
        (("declined", "bob"), {"how": "inline", "tty": "/dev/pts/3", "reason": "not now"},
         "approval: declined by bob at /dev/pts/3 (not now)"),
        (("declined", "bob"), {"how": "inline"},
         "approval: declined by bob at guardctl's terminal"),
        (("approved", "carol"), {"how": "window", "reason": "window until 2026-12-07T14:00Z"},
         "approval: approved by carol (window until 2026-12-07T14:00Z)"),
        (("not given",), {"how": "timeout", "reason": "timed out after 2s"},
         "approval: not given (timed out after 2s)"),
    ],
)
def test_approval_label_says_who_where_and_what(
    args: tuple[str, ...], kwargs: dict[str, str], label: str
) -> None:
    assert cast.approval_label(*args, **kwargs) == label  # type: ignore[arg-type]


def test_command_labels_read_back() -> None:
    assert cast.command_of(cast.command_label("kubectl get pods")) == "kubectl get pods"
    assert cast.command_of("decision: allow") is None
