"""The audit log: record format, hash chain, tamper detection, concurrency, kill safety."""

from __future__ import annotations

import fcntl
import fnmatch
import hashlib
import json
import os
import re
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest
from audit_helpers import Ticker, decision, invoke, ticking_log, verify_home
from hypothesis import given
from hypothesis import strategies as st

from guardctl.errors import UnsafeError
from guardctl.model import Action
from guardctl.recording import audit, auditkey, recorder, sessions

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def history(isolated_home: Path) -> Path:
    """Four invocations (eight records) in two sessions: s1, s2, s1, s2."""
    log = ticking_log(isolated_home)
    for n, session in enumerate(["s1", "s2", "s1", "s2"]):
        invoke(isolated_home, log, session, f"out {n}\n".encode())
    return isolated_home


def _lines(home: Path) -> list[bytes]:
    return audit.log_path(home).read_bytes().splitlines(keepends=True)


def _write_lines(home: Path, lines: list[bytes]) -> None:
    audit.log_path(home).write_bytes(b"".join(lines))


def test_records_have_the_documented_fields(isolated_home: Path) -> None:
    mono = [10.0]
    log = audit.AuditLog(
        audit.log_path(isolated_home), clock=Ticker(1_700_000_000.0), monotonic=lambda: mono[0]
    )
    approver = audit.Approver("alice", "/dev/pts/3", 1_700_000_000.5)
    handle = log.start(
        session="s1", argv=["kubectl", "delete", "ns", "x"], line="kubectl delete ns x",
        decision=decision(Action.APPROVE, "delete-namespace"), user="bob", cwd="/src",
    )
    mono[0] = 11.25
    log.finish(handle, 3, approver=approver)
    started, completed = [json.loads(x) for x in _lines(isolated_home)]
    head = json.loads(auditkey.head_path(audit.log_path(isolated_home)).read_bytes())
    log_id = head["log"]
    assert started == {
        "v": 2, "status": "started", "time": "2023-11-14T22:13:21.000Z", "session": "s1",
        "user": "bob", "cwd": "/src", "argv": ["kubectl", "delete", "ns", "x"],
        "line": "kubectl delete ns x", "decision": "approve", "rules": ["delete-namespace"],
        "reason": "because", "approver": None, "cast": None,
        "log": log_id, "seq": 1, "prev": audit.GENESIS, "hash": started["hash"],
        "mac": started["mac"],
    }
    assert completed == {
        "v": 2, "status": "completed", "time": "2023-11-14T22:13:22.000Z", "session": "s1",
        "started": started["hash"], "exit_code": 3, "duration": 1.25,
        "approver": {"user": "alice", "tty": "/dev/pts/3", "at": "2023-11-14T22:13:20.500Z"},
        "cast": None, "log": log_id, "seq": 2, "prev": started["hash"],
        "hash": completed["hash"], "mac": completed["mac"],
    }
    assert started["hash"] == auditkey.record_hash(started)  # over everything but hash and mac
    assert _lines(isolated_home)[0] == auditkey.canonical(started) + b"\n"
    key = bytes.fromhex(auditkey.key_path(audit.log_path(isolated_home)).read_text())
    for record in (started, completed):
        assert record["mac"] == auditkey.record_mac(key, log_id, record["hash"])
    assert head == {
        "log": log_id, "count": 2, "last": completed["hash"],
        "mac": auditkey.head_mac(key, log_id, 2, completed["hash"]),
    }
    assert re.fullmatch("[0-9a-f]{32}", log_id)


def test_an_untouched_log_verifies(history: Path) -> None:
    result = verify_home(history)
    assert (result.ok, result.first_bad_index, result.records) == (True, None, 8)
    assert "OK, 8 records" in result.message


def test_no_log_yet_verifies(isolated_home: Path) -> None:
    assert verify_home(isolated_home).ok


def _edit_exit_code(home: Path) -> None:
    lines = _lines(home)
    lines[3] = lines[3].replace(b'"exit_code":0', b'"exit_code":1')
    _write_lines(home, lines)


def _edit_and_rehash(home: Path) -> None:
    """Edit a record and fix its own hash: its mac gives it away."""
    lines = _lines(home)
    record = json.loads(lines[2])
    record["argv"] = ["kubectl", "get", "nodes"]
    record["hash"] = auditkey.record_hash(record)
    lines[2] = auditkey.canonical(record) + b"\n"
    _write_lines(home, lines)


def _reformat(home: Path) -> None:
    lines = _lines(home)
    lines[4] = json.dumps(json.loads(lines[4])).encode() + b"\n"  # same content, other bytes
    _write_lines(home, lines)


def _delete_line(home: Path) -> None:
    lines = _lines(home)
    del lines[5]
    _write_lines(home, lines)


def _swap_lines(home: Path) -> None:
    lines = _lines(home)
    lines[2], lines[4] = lines[4], lines[2]
    _write_lines(home, lines)


def _truncate_mid_line(home: Path) -> None:
    data = audit.log_path(home).read_bytes()
    audit.log_path(home).write_bytes(data[: len(data) - 20])


def _garbage_last_line(home: Path) -> None:
    _write_lines(home, [*_lines(home)[:-1], b"garbage\n"])


def _swap_cast(home: Path) -> None:
    casts = recorder.cast_dir(home)
    s1, s2 = (casts / "s1.cast").read_bytes(), (casts / "s2.cast").read_bytes()
    (casts / "s1.cast").write_bytes(s2)
    (casts / "s2.cast").write_bytes(s1)


def _append_to_cast(home: Path) -> None:
    with open(recorder.cast_dir(home) / "s2.cast", "ab") as f:
        f.write(b'[99.0, "o", "added later"]\n')


def _remove_cast(home: Path) -> None:
    (recorder.cast_dir(home) / "s1.cast").unlink()


@pytest.mark.parametrize(
    ("tamper", "bad_index", "why"),
    [
        (_edit_exit_code, 3, "does not match its hash"),
        (_edit_and_rehash, 2, "has a wrong mac: it was not written by this log's key"),
        (_reformat, 4, "not in canonical form"),
        (_delete_line, 5, "record 7 stands where record 6 belongs: record 6 is missing"),
        (_swap_lines, 2, "record 5 stands where record 3 belongs: records 3-4 are missing"),
        (_truncate_mid_line, 7, "cut short"),
        (_garbage_last_line, 7, "not a readable record"),
        (_swap_cast, 1, "cast s1.cast no longer matches"),
        (_append_to_cast, 7, "cast s2.cast has 27 bytes added after recording"),
        (_remove_cast, 1, "names cast s1.cast, which cannot be read"),
    ],
)
def test_tampering_is_detected(
    history: Path, tamper: Callable[[Path], None], bad_index: int, why: str
) -> None:
    tamper(history)
    result = verify_home(history)
    assert not result.ok
    assert result.first_bad_index == bad_index
    assert why in result.message
    assert f"line {bad_index + 1}:" in result.message


def test_appends_continue_the_chain_past_a_torn_line(history: Path) -> None:
    with open(audit.log_path(history), "ab") as f:
        f.write(b'{"v":1,"status":"sta')  # a writer killed mid-write
    assert "cut short" in verify_home(history).message
    invoke(history, ticking_log(history), "s1", b"after\n")
    result = verify_home(history)
    assert (result.ok, result.records) == (True, 10), result.message
    assert _lines(history)[8] == b'{"v":1,"status":"sta\n'  # closed off, never rewritten


def test_an_invocation_killed_mid_run_is_incomplete_not_tampering(isolated_home: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        sys.path.insert(0, {str(REPO)!r})
        from guardctl.recording import audit, recorder
        home = Path({str(isolated_home)!r})
        rec = recorder.open_recording(home, "s1")
        log = audit.AuditLog(audit.log_path(home))
        log.start(session="s1", argv=["kubectl", "logs", "-f", "web"], cast=rec.start_ref())
        rec.marker("decision: allow")
        rec.output(b"partial output\\n")
        print("running", flush=True)
        time.sleep(60)
        """
    )
    invoke(isolated_home, ticking_log(isolated_home), "s1", b"earlier\n")
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"running\n"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    rows = sessions.sessions(audit.log_path(isolated_home))
    assert [(r["status"], r["argv"][1]) for r in rows] == [
        ("completed", "get"), ("incomplete", "logs"),
    ]
    result = verify_home(isolated_home)
    assert result.ok and "1 incomplete" in result.message, result.message
    # the session goes on: the next invocation appends after the killed one's bytes
    invoke(isolated_home, ticking_log(isolated_home), "s1", b"later\n")
    assert verify_home(isolated_home).ok


def test_concurrent_writers_keep_one_chain(isolated_home: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        sys.path.insert(0, {str(REPO)!r})
        from guardctl.recording import audit
        log = audit.AuditLog(audit.log_path(Path({str(isolated_home)!r})))
        for n in range(10):
            handle = log.start(session=sys.argv[1], argv=["kubectl", "get", str(n)])
            log.finish(handle, n)
        """
    )
    workers = [
        subprocess.Popen([sys.executable, "-c", script, f"w{i}"]) for i in range(10)
    ]
    assert [w.wait(timeout=120) for w in workers] == [0] * 10
    result = verify_home(isolated_home)
    assert (result.ok, result.records) == (True, 200), result.message
    rows = sessions.sessions(audit.log_path(isolated_home))
    assert len(rows) == 100 and all(r["status"] == "completed" for r in rows)


def test_an_unwritable_log_raises_unsafe(isolated_home: Path) -> None:
    audit.log_path(isolated_home).mkdir()  # a folder where the log should be
    with pytest.raises(UnsafeError, match="cannot write the audit log .*the command was not run"):
        ticking_log(isolated_home).start(session="s1", argv=["kubectl", "get", "pods"])


def test_a_record_the_disk_did_not_keep_stops_the_command_and_leaves_the_head(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # when the disk does not keep the record (EIO on its sync), nothing runs and the head
    # does not move ahead of the log
    log = ticking_log(isolated_home)
    log.start(session="s1", argv=["kubectl", "get", "pods"])
    path = audit.log_path(isolated_home)
    head_before = log.head_path.read_bytes()
    real_sync = os.fdatasync

    def failing_for_the_log(fd: int) -> None:
        if os.fstat(fd).st_ino == path.stat().st_ino:
            raise OSError(5, "Input/output error")
        real_sync(fd)

    monkeypatch.setattr(os, "fdatasync", failing_for_the_log)
    with pytest.raises(UnsafeError, match="cannot write the audit log .*Input/output error"):
        log.start(session="s2", argv=["kubectl", "delete", "ns", "prod"])
    assert log.head_path.read_bytes() == head_before
    assert not list(isolated_home.glob(".*.tmp"))


def test_a_held_lock_times_out_unsafe(isolated_home: Path) -> None:
    path = audit.log_path(isolated_home)
    path.touch()
    log = audit.AuditLog(path, lock_timeout=0.05)
    with open(path, "rb") as holder:
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX)
        started = time.monotonic()
        with pytest.raises(UnsafeError, match="held its lock"):
            log.start(session="s1", argv=["kubectl"])
    assert time.monotonic() - started < 5
    assert path.read_bytes() == b""


@pytest.mark.parametrize(
    ("argv", "stored"),
    [
        (["kubectl", "get", "pods"], ["kubectl", "get", "pods"]),
        (["kubectl", "--token=abc123", "get", "pods"],
         ["kubectl", "--token=«masked:flag-token»", "get", "pods"]),
        (["kubectl", "--token", "abc123", "get"],
         ["kubectl", "--token", "«masked:flag-token»", "get"]),
        (["kubectl", "config", "set-credentials", "u", "--password", "pw"],
         ["kubectl", "config", "set-credentials", "u", "--password", "«masked:flag-password»"]),
        (["kubectl", "create", "secret", "generic", "s", "--from-literal=db=hunter2"],
         ["kubectl", "create", "secret", "generic", "s",
          "--from-literal=db=«masked:flag-from-literal»"]),
        (["kubectl", "--client-key=/k.pem"], ["kubectl", "--client-key=«masked:flag-client-key»"]),
        (["kubectl", "get", "--token"], ["kubectl", "get", "--token"]),  # no value to hide
        (["kubectl", "get", "x\udcff"], ["kubectl", "get", "x?"]),  # undecodable byte
    ],
)
def test_mask_argv(argv: list[str], stored: list[str]) -> None:
    assert audit.mask_argv(argv) == stored


@pytest.mark.parametrize(
    ("line", "argv", "stored"),
    [
        # the detectors may name the placeholder themselves: only its start is fixed
        ("kubectl --token=abc123 get pods | head", ["kubectl", "--token=abc123", "get", "pods"],
         "kubectl --token=«masked:* get pods | head"),
        ("kubectl --token 'abc123' get", ["kubectl", "--token", "abc123", "get"],
         "kubectl --token '«masked:*' get"),
        ("kubectl --token ab\\c123 get", ["kubectl", "--token", "abc123", "get"], "«masked:line»"),
        ("kubectl get pods", ["kubectl", "get", "pods"], "kubectl get pods"),
    ],
)
def test_mask_line(line: str, argv: list[str], stored: str) -> None:
    masked = audit.mask_line(line, argv)
    assert fnmatch.fnmatchcase(masked, stored), masked
    assert "abc123" not in masked


def test_raw_flag_secrets_never_reach_the_log(isolated_home: Path) -> None:
    log = ticking_log(isolated_home)
    log.start(
        session="s1", argv=["kubectl", "--token", "s3cr3t-value", "get", "pods"],
        line="kubectl --token s3cr3t-value get pods",
    )
    assert b"s3cr3t-value" not in audit.log_path(isolated_home).read_bytes()


def test_sessions_filters_and_formats(isolated_home: Path) -> None:
    log = ticking_log(isolated_home)
    invoke(isolated_home, log, "s1", b"a\n")
    invoke(isolated_home, log, "s2", b"b\n", decision(Action.DENY, "no-delete"))
    log.start(session="s2", argv=["kubectl", "logs", "-f", "x"], decision=decision())
    path = audit.log_path(isolated_home)
    assert [r["session"] for r in sessions.sessions(path)] == ["s1", "s2", "s2"]
    assert [r["status"] for r in sessions.sessions(path, session="s2")] == [
        "completed", "incomplete"
    ]
    assert [r["decision"] for r in sessions.sessions(path, decision="deny")] == ["deny"]
    late = datetime.fromtimestamp(1_700_000_005, timezone.utc)
    assert [r["argv"][1] for r in sessions.sessions(path, since=late)] == ["logs"]
    table = sessions.format_sessions(sessions.sessions(path)).splitlines()
    assert table[0].split() == ["TIME", "SESSION", "DECISION", "EXIT", "STATUS", "COMMAND"]
    assert table[2].split()[1:5] == ["s2", "deny", "(no-delete)", "0"]
    assert table[3].endswith("incomplete  kubectl logs -f x")
    parsed = [json.loads(x) for x in sessions.sessions_json(sessions.sessions(path)).splitlines()]
    assert [p["status"] for p in parsed] == ["completed", "completed", "incomplete"]
    assert parsed[0]["cast"]["file"] == "s1.cast"


def test_sessions_json_names_the_agent_a_broker_ran_each_command_for(
    isolated_home: Path,
) -> None:
    log = ticking_log(isolated_home)
    invoke(isolated_home, log, "own", b"a\n")
    handle = log.start(session="ci", argv=["kubectl", "get", "ns"], decision=decision(),
                       agent="ci-1")
    log.finish(handle, 0, agent="ci-1")
    log.start(session="ci", argv=["kubectl", "logs", "-f", "x"], decision=decision(),
              agent="ci-2")
    rows = sessions.sessions(audit.log_path(isolated_home))
    parsed = [json.loads(x) for x in sessions.sessions_json(rows).splitlines()]
    assert [(p["agent"], p["status"]) for p in parsed] == [
        (None, "completed"), ("ci-1", "completed"), ("ci-2", "incomplete")]
    assert {"session", "user", "argv", "exit_code", "approver", "cast"} <= set(parsed[0])


@pytest.mark.parametrize(
    "seconds", [0.0, 1.5, 1767268800.0, 1767268800.1234, 1767268800.9999, 1767268800.99999951]
)
def test_iso_time_is_datetimes_isoformat(seconds: float) -> None:
    moment = datetime.fromtimestamp(seconds, timezone.utc)
    expected = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert audit.iso_time(seconds) == expected


# --------------------------------------------------------------------------- key and head files


def test_the_key_is_made_once_private_and_never_rewritten(isolated_home: Path) -> None:
    log_file = audit.log_path(isolated_home)
    key_file, head_file = auditkey.key_path(log_file), auditkey.head_path(log_file)
    assert (key_file.name, head_file.name) == ("audit.key", "audit.head")
    old_umask = os.umask(0o022)
    try:
        invoke(isolated_home, ticking_log(isolated_home), "s1", b"a\n")
    finally:
        os.umask(old_umask)
    made = key_file.stat()
    text = key_file.read_text()
    assert re.fullmatch("[0-9a-f]{64}\n", text)
    assert stat.S_IMODE(made.st_mode) == 0o600 and stat.S_IMODE(head_file.stat().st_mode) == 0o600
    invoke(isolated_home, ticking_log(isolated_home), "s1", b"b\n")
    again = key_file.stat()
    assert (again.st_ino, again.st_mtime_ns, key_file.read_text()) == (
        made.st_ino, made.st_mtime_ns, text
    )
    assert json.loads(head_file.read_bytes())["count"] == 4
    assert not list(isolated_home.glob(".audit.head*"))  # no temp file left behind


def test_a_symlink_planted_at_the_head_is_not_followed(isolated_home: Path) -> None:
    target = isolated_home.parent / "target"
    target.write_text("untouched")
    auditkey.head_path(audit.log_path(isolated_home)).symlink_to(target)
    with pytest.raises(UnsafeError, match="the head .*audit.head is a symbolic link"):
        ticking_log(isolated_home).start(session="s1", argv=["kubectl"])
    assert target.read_text() == "untouched"
    assert audit.log_path(isolated_home).read_bytes() == b""


def test_a_head_lost_while_the_key_was_being_made(isolated_home: Path) -> None:
    """A writer killed between creating the key and writing the first head: verify says
    so (it cannot tell this from a deleted head), the next append writes a head."""
    log_file = audit.log_path(isolated_home)
    log_file.touch()
    auditkey.key_path(log_file).write_text(os.urandom(32).hex() + "\n")
    result = verify_home(isolated_home)
    assert not result.ok and "audit.head is missing while the key" in result.message
    invoke(isolated_home, ticking_log(isolated_home), "s1", b"a\n")
    assert verify_home(isolated_home).ok


def test_with_neither_key_nor_head_appends_refuse_a_keyed_log(history: Path) -> None:
    log_file = audit.log_path(history)
    auditkey.key_path(log_file).unlink()
    auditkey.head_path(log_file).unlink()
    result = verify_home(history)
    assert result.first_bad_index == 0
    assert "line 1: record is keyed, but the key" in result.message
    with pytest.raises(UnsafeError, match="the key .* is missing while the log has keyed records"):
        ticking_log(history).start(session="s1", argv=["kubectl"])
    assert not auditkey.key_path(log_file).exists()


def test_a_torn_line_in_a_keyed_log_is_vouched_for_by_the_record_closing_it(
    history: Path,
) -> None:
    with open(audit.log_path(history), "ab") as f:
        f.write(b'{"v":2,"status":"sta')
    invoke(history, ticking_log(history), "s1", b"after\n")
    records = [json.loads(x) for x in _lines(history) if x.startswith(b'{"app')]
    assert records[8]["torn"] == hashlib.sha256(b'{"v":2,"status":"sta').hexdigest()
    assert verify_home(history).ok
    # the same line put there by hand, with no record vouching for it, is reported
    lines = _lines(history)
    lines.insert(3, b'{"v":2,"status":"sta\n')
    _write_lines(history, lines)
    result = verify_home(history)
    assert (result.first_bad_index, "not a readable record" in result.message) == (3, True)


# --------------------------------------------------------------------------- old logs


def _v1_log(home: Path, invocations: int) -> list[dict[str, object]]:
    """A log as guardctl wrote it before keyed records (format 1, no key, no head)."""
    records: list[dict[str, object]] = []
    prev = audit.GENESIS
    for n in range(invocations):
        started: dict[str, object] = {
            "v": 1, "status": "started", "time": f"2025-01-01T00:00:0{n}.000Z", "session": "old",
            "user": "u", "cwd": "/w", "argv": ["kubectl", "get", str(n)], "line": None,
            "decision": "allow", "rules": [], "reason": "allowed", "approver": None,
            "cast": None, "prev": prev,
        }
        started["hash"] = prev = auditkey.record_hash(started)
        completed: dict[str, object] = {
            "v": 1, "status": "completed", "time": f"2025-01-01T00:00:0{n}.500Z",
            "session": "old", "started": prev, "exit_code": 0, "duration": 0.5,
            "approver": None, "cast": None, "prev": prev,
        }
        completed["hash"] = prev = auditkey.record_hash(completed)
        records += [started, completed]
    _write_lines(home, [auditkey.canonical(r) + b"\n" for r in records])
    return records


def test_an_old_log_verifies_but_is_not_authenticated(isolated_home: Path) -> None:
    _v1_log(isolated_home, 3)
    result = verify_home(isolated_home)
    assert (result.ok, result.records, result.keyed) == (True, 6, 0)
    assert result.message.endswith(
        "OK, 6 records, not authenticated (written before keyed records)"
    )
    assert not auditkey.key_path(audit.log_path(isolated_home)).exists()
    # a plain edit is still found by the hash chain
    _edit_exit_code(isolated_home)
    assert "line 4: record does not match its hash" in verify_home(isolated_home).message


def test_appending_to_an_old_log_starts_keyed_records_there(isolated_home: Path) -> None:
    old = _v1_log(isolated_home, 3)
    invoke(isolated_home, ticking_log(isolated_home), "s1", b"new\n")
    records = [json.loads(x) for x in _lines(isolated_home)]
    assert [r["v"] for r in records] == [1] * 6 + [2] * 2
    assert [r.get("seq") for r in records[6:]] == [7, 8]
    assert records[6]["prev"] == old[-1]["hash"]  # the chain goes on through the old records
    head = json.loads(auditkey.head_path(audit.log_path(isolated_home)).read_bytes())
    assert (head["count"], head["last"]) == (8, records[-1]["hash"])
    result = verify_home(isolated_home)
    assert (result.ok, result.records, result.keyed) == (True, 8, 2), result.message
    assert "the first 6 were written before keyed records" in result.message
    rows = sessions.sessions(audit.log_path(isolated_home))
    assert [(r["session"], r["status"]) for r in rows] == [("old", "completed")] * 3 + [
        ("s1", "completed")
    ]


def test_old_records_are_vouched_for_as_they_were_when_keyed_ones_began(
    isolated_home: Path,
) -> None:
    records = _v1_log(isolated_home, 3)
    invoke(isolated_home, ticking_log(isolated_home), "s1", b"new\n")
    keyed = _lines(isolated_home)[6:]
    records[2]["argv"] = ["kubectl", "get", "nodes"]  # rewrite the old part, hashes and all
    prev = records[1]["hash"]
    for record in records[2:]:
        if record["status"] == "completed":
            record["started"] = prev
        record["prev"] = prev
        record["hash"] = prev = auditkey.record_hash(record)
    _write_lines(isolated_home, [auditkey.canonical(r) + b"\n" for r in records] + keyed)
    result = verify_home(isolated_home)
    assert result.first_bad_index == 6
    assert "does not follow the previous record" in result.message


def test_keyed_records_cut_off_an_old_log_are_reported(isolated_home: Path) -> None:
    _v1_log(isolated_home, 3)
    invoke(isolated_home, ticking_log(isolated_home), "s1", b"new\n")
    _write_lines(isolated_home, _lines(isolated_home)[:6])
    result = verify_home(isolated_home)
    assert "records 7-8 were removed from the end" in result.message
    # nor can records without a mac stand past the head's position
    _v1_log(isolated_home, 5)
    result = verify_home(isolated_home)
    assert (result.first_bad_index, "has no mac" in result.message) == (8, True), result.message


def test_an_old_log_keeps_its_closed_off_torn_lines(isolated_home: Path) -> None:
    _v1_log(isolated_home, 2)
    lines = _lines(isolated_home)
    lines.insert(2, b'{"v":1,"status":"sta\n')  # how a format 1 writer closed a torn line off
    _write_lines(isolated_home, lines)
    assert verify_home(isolated_home).ok
    invoke(isolated_home, ticking_log(isolated_home), "s1", b"new\n")
    result = verify_home(isolated_home)
    assert (result.ok, result.records, result.keyed) == (True, 6, 2), result.message


ARGV_SECRETS = [
    "ghp_1234567890abcdefghijABCDEFGHIJ123456", "AKIAZZZZQQQQRRRR7XYZ",
    "xoxb-123456789012-1234567890123-abcdefghijABCDEFGHIJabcd", "glpat-abcdefghij1234567890",
]
ARGV_WORDS = ["kubectl", "get", "pods", "-n", "dev", "-o", "yaml", "data:", "kind: Secret",
              "--", "-----BEGIN PRIVATE KEY-----", "a\nb", "", "password:", "x=y"]


@given(
    st.lists(st.sampled_from(ARGV_WORDS) | st.text(max_size=12), max_size=8),
    st.sampled_from(ARGV_SECRETS),
    st.integers(0, 8),
    st.sampled_from(["{}", "--token={}", "KEY={}", "{}\n"]),
)
def test_argv_masking_hides_every_secret_whatever_surrounds_it(
    words: list[str], secret: str, at: int, shape: str
) -> None:
    words.insert(min(at, len(words)), shape.format(secret))
    masked = audit.mask_argv(words)
    assert len(masked) == len(words)
    assert secret not in "\0".join(masked)
