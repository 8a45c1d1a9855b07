"""Session casts on disk: appending invocations, locking, overflow parts, torn tails."""

from __future__ import annotations

import fcntl
import json
import os
import stat
from pathlib import Path

import pytest
from test_cast import FakeClock, asciinema_cat

from guardctl.errors import UnsafeError, UsageError
from guardctl.recording import cast, recorder


def _record(home: Path, session: str, wall: float, outputs: list[bytes], **kw: object) -> Path:
    mono = FakeClock(0.0)
    with recorder.open_recording(
        home, session, clock=lambda: wall, monotonic=mono, **kw  # type: ignore[arg-type]
    ) as rec:
        rec.marker("decision: allow")
        for data in outputs:
            mono.now += 0.5
            rec.output(data)
        extent = rec.finish()
    assert extent.size == rec.path.stat().st_size
    return rec.path


def _events(path: Path) -> tuple[dict[str, object], list[cast.Event]]:
    lines = cast.split_lines(path.read_text(encoding="utf-8"))
    return cast.read_header(lines[0]), list(cast.read_events(lines[1:]))


def test_invocations_of_one_session_share_one_cast(isolated_home: Path) -> None:
    first = _record(isolated_home, "s1", 1_000_000.0, [b"one\n"])
    second = _record(isolated_home, "s1", 1_000_010.0, [b"two\n", b"three\n"])
    assert first == second == isolated_home / "casts" / "s1.cast"
    head, events = _events(first)
    assert head["guardctl"] == {"session": "s1"}
    assert head["timestamp"] == 1_000_000
    # the second invocation starts at its wall time since the header: 10 s in
    assert [(e.time, e.code, e.data) for e in events] == [
        (0.0, "m", "decision: allow"), (0.5, "o", "one\n"),
        (10.0, "m", "decision: allow"), (10.5, "o", "two\n"), (11.0, "o", "three\n"),
    ]
    assert asciinema_cat(first) == "one\ntwo\nthree\n"


def test_times_continue_after_the_last_event_when_the_clock_is_behind(
    isolated_home: Path,
) -> None:
    _record(isolated_home, "s1", 1_000_000.0, [b"a", b"b", b"c"])  # last event at 1.5
    path = _record(isolated_home, "s1", 999_000.0, [b"d"])  # wall clock set back
    times = [e.time for e in _events(path)[1]]
    assert times == sorted(times) and times[-2:] == [1.5, 2.0]


def test_cast_and_folder_are_private(isolated_home: Path) -> None:
    old = os.umask(0o022)
    try:
        path = _record(isolated_home, "s1", 1.0, [b"x"])
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_a_busy_cast_overflows_into_a_part(isolated_home: Path) -> None:
    with recorder.open_recording(isolated_home, "s1") as busy:
        path = _record(isolated_home, "s1", 1.0, [b"x"])
        assert busy.path.name == "s1.cast"
        assert path.name == "s1~2.cast"
    assert _record(isolated_home, "s1", 2.0, [b"y"]).name == "s1.cast"  # free again


def test_busy_parts_never_refuse_a_recording(isolated_home: Path) -> None:
    """Issue 13: with every part busy a new part is made, never "all cast files in use"."""
    held = [recorder.open_recording(isolated_home, "s1") for _ in range(12)]
    try:
        assert [r.path.name for r in held] == ["s1.cast"] + [f"s1~{n}.cast" for n in range(2, 13)]
        held[4].close()  # the lowest free part is taken again
        assert _record(isolated_home, "s1", 1.0, [b"x"]).name == "s1~5.cast"
    finally:
        for rec in held:
            rec.close()


def test_nothing_is_written_before_the_first_event(isolated_home: Path) -> None:
    with recorder.open_recording(isolated_home, "s1") as rec:
        assert rec.start_ref() == {"file": "s1.cast", "offset": 0}
    assert rec.path.read_bytes() == b""


def test_a_torn_tail_is_cut_before_appending(isolated_home: Path) -> None:
    path = _record(isolated_home, "s1", 1.0, [b"whole\n"])
    kept = path.stat().st_size
    with open(path, "ab") as f:
        f.write(b'[9.0, "o", "tor')  # a writer killed mid-line
    with recorder.open_recording(isolated_home, "s1") as rec:
        assert rec.offset == kept
        rec.output(b"next")
        rec.finish()
    assert [e.data for e in _events(path)[1]] == ["decision: allow", "whole\n", "next"]


@pytest.mark.parametrize("content", [b"not a cast\n", b'{"version": 1}\n[0.1, "o", "x"]\n'])
def test_a_file_that_is_not_a_cast_fails_closed(isolated_home: Path, content: bytes) -> None:
    path = recorder.session_cast(isolated_home, "s1")
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.raises(UnsafeError, match="not a valid asciicast.*keep a copy.*move it away"):
        recorder.open_recording(isolated_home, "s1")
    assert path.read_bytes() == content
    # the lock was released with the error
    with open(path, "rb") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_a_symlink_at_the_cast_name_is_refused(isolated_home: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("")
    (isolated_home / "casts").mkdir()
    (isolated_home / "casts" / "s1.cast").symlink_to(target)
    with pytest.raises(UnsafeError):
        recorder.open_recording(isolated_home, "s1")
    assert target.read_text() == ""


def test_an_unwritable_folder_fails_closed(isolated_home: Path) -> None:
    (isolated_home / "casts").write_text("a file where the folder should be")
    with pytest.raises(UnsafeError, match="cannot write the cast"):
        recorder.open_recording(isolated_home, "s1")


@pytest.mark.parametrize("session", ["../x", "a/b", "", ".hidden", "a~2", "x" * 129, "a b"])
def test_invalid_session_ids(isolated_home: Path, session: str) -> None:
    with pytest.raises(UsageError):
        recorder.open_recording(isolated_home, session)


def test_new_session_ids_are_valid_and_distinct() -> None:
    ids = {recorder.new_session_id(0.0) for _ in range(20)}
    assert len(ids) == 20
    assert all(recorder.check_session_id(i).startswith("19700101T000000Z-") for i in ids)


def test_extent_hashes_the_prefix(isolated_home: Path) -> None:
    _record(isolated_home, "s1", 1.0, [b"x"])
    with recorder.open_recording(isolated_home, "s1") as rec:
        rec.output(b"y")
        extent = rec.finish()
    assert json.loads(json.dumps(extent.to_json()))["size"] == rec.path.stat().st_size
    assert recorder.sha256_prefix(rec.path, extent.size) == extent.sha256
    assert recorder.sha256_prefix(rec.path, extent.size + 1) is None


@pytest.mark.parametrize("onlcr", [False, True], ids=["pty", "pipes"])
def test_guardctls_own_lines_are_cast_as_a_terminal_shows_them(
    isolated_home: Path, onlcr: bool
) -> None:
    """kubectl's pty output already has "\\r\\n"; guardctl's own message never does."""
    with recorder.open_recording(isolated_home, "s1", onlcr=onlcr) as rec:
        rec.output(b"table\r\n" if not onlcr else b"table\n")
        rec.say("guardctl: denied.\nNothing was sent.\n")
        rec.finish()
    assert asciinema_cat(rec.path) == "table\r\nguardctl: denied.\r\nNothing was sent.\r\n"
