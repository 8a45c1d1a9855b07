"""The keyed audit log against someone who can write its files but does not hold the key.

Each attack edits the real files the way such a writer would: plain file operations,
sha256 hashes recomputed with `record_hash` and `canonical`, macs left alone, copied or
dropped (they cannot be computed without `audit.key`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from audit_helpers import invoke, ticking_log, verify_home

from guardctl.errors import UnsafeError
from guardctl.recording import audit, auditkey, recorder, sessions

REPO = Path(__file__).resolve().parent.parent
INVOCATIONS = 8  # sixteen records, sessions s1 and s2 taking turns
ROLLBACK_AT = 6  # invocations done when the fixture keeps a copy of the head


def _invoke(home: Path, log: audit.AuditLog, session: str, output: bytes) -> None:
    invoke(home, log, session, output, ticking_cast=True)


def _paths(home: Path) -> tuple[Path, Path, Path]:
    log = audit.log_path(home)
    return log, auditkey.key_path(log), auditkey.head_path(log)


def _old_head(home: Path) -> Path:
    return home.parent / "head-copy"


@pytest.fixture
def history(isolated_home: Path) -> Path:
    """Eight invocations with casts; a copy of the head as it was after the sixth."""
    log = ticking_log(isolated_home)
    for n in range(INVOCATIONS):
        _invoke(isolated_home, log, f"s{n % 2 + 1}", f"output {n}\n".encode())
        if n + 1 == ROLLBACK_AT:
            shutil.copy(_paths(isolated_home)[2], _old_head(isolated_home))
    result = verify_home(isolated_home)
    assert (result.ok, result.records, result.keyed) == (True, 16, 16), result.message
    return isolated_home


# --------------------------------------------------------------------------- attacker's tools


def _lines(home: Path) -> list[bytes]:
    return audit.log_path(home).read_bytes().splitlines(keepends=True)


def _read(home: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in _lines(home)]


def _write(home: Path, records: list[dict[str, Any]]) -> None:
    audit.log_path(home).write_bytes(b"".join(auditkey.canonical(r) + b"\n" for r in records))


def _rechain(records: list[dict[str, Any]], start: int, *, keep_macs: bool = True) -> None:
    """Recompute `prev` and `hash` from record `start` on, as far as sha256 goes: completions
    follow their started records' new hashes; macs are kept (or dropped), not computable."""
    renamed: dict[str, str] = {}
    prev = records[start - 1]["hash"] if start else audit.GENESIS
    for record in records[start:]:
        if record.get("started") in renamed:
            record["started"] = renamed[record["started"]]
        if not keep_macs:
            record.pop("mac", None)
        record["prev"] = prev
        old, record["hash"] = record["hash"], auditkey.record_hash(record)
        renamed[old] = prev = record["hash"]


def _forged(records: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    """A record as guardctl would write it next, hash and all, but no mac."""
    last = records[-1]
    record: dict[str, Any] = {
        "v": 2, "status": "started", "time": "2023-11-14T23:00:00.000Z", "session": "s1",
        "user": "u", "cwd": "/w", "argv": ["kubectl", "get", "pods"], "line": None,
        "decision": "allow", "rules": [], "reason": "allowed", "approver": None, "cast": None,
        "log": last["log"], "seq": last["seq"] + 1, "prev": last["hash"], **fields,
    }
    record["hash"] = auditkey.record_hash(record)
    return record


# --------------------------------------------------------------------------- attacks


def edit_last_record_and_rehash(home: Path) -> None:
    records = _read(home)
    records[-1]["exit_code"] = 1
    records[-1]["hash"] = auditkey.record_hash(records[-1])
    _write(home, records)


def rechain_from_a_middle_record(home: Path) -> None:
    records = _read(home)
    records[5]["exit_code"] = 1
    _rechain(records, 5, keep_macs=False)
    _write(home, records)


def append_a_forged_pair(home: Path) -> None:
    records = _read(home)
    records.append(_forged(records))
    started = records[-1]
    records.append(_forged(records, status="completed", started=started["hash"], exit_code=0))
    _write(home, records)


def drop_the_first_records_and_rechain(home: Path) -> None:
    records = _read(home)[4:]
    for n, record in enumerate(records, start=1):
        record["seq"] = n
    _rechain(records, 0)
    _write(home, records)


def drop_the_first_records(home: Path) -> None:
    _write(home, _read(home)[4:])


def insert_a_junk_line(home: Path) -> None:
    lines = _lines(home)
    lines.insert(7, b"kubectl delete ns prod was never run\n")
    audit.log_path(home).write_bytes(b"".join(lines))


def truncate_the_last_records(home: Path) -> None:
    audit.log_path(home).write_bytes(b"".join(_lines(home)[:-2]))


def delete_the_log(home: Path) -> None:
    audit.log_path(home).unlink()


def edit_a_middle_argv(home: Path) -> None:
    lines = _lines(home)
    lines[6] = lines[6].replace(b'"argv":["kubectl","get","pods"]', b'"argv":["kubectl","get"]')
    audit.log_path(home).write_bytes(b"".join(lines))


def rehash_keeping_the_old_macs(home: Path) -> None:
    records = _read(home)
    records[6]["argv"] = ["kubectl", "get", "nodes"]
    _rechain(records, 6)
    _write(home, records)


def swap_two_records(home: Path) -> None:
    lines = _lines(home)
    lines[4], lines[6] = lines[6], lines[4]
    audit.log_path(home).write_bytes(b"".join(lines))


def append_a_record_with_a_copied_mac(home: Path) -> None:
    records = _read(home)
    records.append(_forged(records, mac=records[-1]["mac"]))
    _write(home, records)


def roll_the_head_back_and_truncate(home: Path) -> None:
    audit.log_path(home).write_bytes(b"".join(_lines(home)[: 2 * ROLLBACK_AT]))
    shutil.copy(_old_head(home), _paths(home)[2])


def delete_the_head(home: Path) -> None:
    _paths(home)[2].unlink()


def delete_the_key(home: Path) -> None:
    _paths(home)[1].unlink()


def forge_the_head(home: Path) -> None:
    head_file = _paths(home)[2]
    head = json.loads(head_file.read_bytes())
    head["count"] -= 2  # would hide two records cut off the end, if it were believed
    head["last"] = _read(home)[head["count"] - 1]["hash"]
    head_file.write_bytes(auditkey.canonical(head) + b"\n")


def pass_off_as_an_old_log(home: Path) -> None:
    """Strip the keyed fields and re-chain everything as records from before keyed ones."""
    records = _read(home)
    for record in records:
        record["v"] = 1
        for name in ("log", "seq", "mac"):
            del record[name]
    _rechain(records, 0)
    _write(home, records)


# (attack, 0-based line index reported or None, what the message says)
_ATTACKS: list[tuple[Callable[[Path], None], int | None, str]] = [
    (edit_last_record_and_rehash, 15, "has a wrong mac: it was not written by this log's key"),
    (rechain_from_a_middle_record, 5, "has no mac: it was not written by this log's key"),
    (append_a_forged_pair, 16, "has no mac: it was not written by this log's key"),
    (drop_the_first_records_and_rechain, 0, "has a wrong mac"),
    (drop_the_first_records, 0, "record 5 stands where record 1 belongs: records 1-4 are missing"),
    (insert_a_junk_line, 7, "is not a readable record"),
    (truncate_the_last_records, 14, "records 15-16 were removed from the end: the head"),
    (delete_the_log, None, "the audit log was deleted (audit.key and audit.head still there)"),
    (edit_a_middle_argv, 6, "does not match its hash (edited)"),
    (rehash_keeping_the_old_macs, 6, "has a wrong mac"),
    (swap_two_records, 4, "record 7 stands where record 5 belongs"),
    (append_a_record_with_a_copied_mac, 16, "has a wrong mac"),
    # log and head agree again; the bytes the dropped invocations left in s1's cast do not
    (roll_the_head_back_and_truncate, 9, "cast s1.cast has 55 bytes added after recording"),
    (delete_the_head, None, "audit.head is missing (deleted) while the log has 16 keyed records"),
    (delete_the_key, None, "audit.key is missing (deleted?) while the head"),
    (forge_the_head, None, "audit.head was not written by this log's key"),
    (pass_off_as_an_old_log, 15, "record 16 is not the one the head"),
]
ATTACKS = [pytest.param(*attack, id=attack[0].__name__) for attack in _ATTACKS]


@pytest.mark.parametrize(("attack", "bad_index", "why"), ATTACKS)
def test_each_attack_is_reported(
    history: Path, attack: Callable[[Path], None], bad_index: int | None, why: str
) -> None:
    attack(history)
    result = verify_home(history)
    assert not result.ok, result.message
    assert why in result.message
    assert result.first_bad_index == bad_index, result.message
    if bad_index is not None:
        assert f": line {bad_index + 1}: " in result.message
    assert "\n" not in result.message


@pytest.mark.parametrize(("attack", "bad_index", "why"), ATTACKS)
def test_the_next_append_does_not_launder_an_attack(
    history: Path, attack: Callable[[Path], None], bad_index: int | None, why: str
) -> None:
    """After an attack, the next invocation either refuses to run (naming the file) or
    appends in a way that keeps the attack visible."""
    attack(history)
    try:
        _invoke(history, ticking_log(history), "s1", b"after the attack\n")
    except UnsafeError as refused:
        assert "audit.key" in str(refused) or "audit.head" in str(refused)
        assert "the command was not run" in str(refused)
        return
    result = verify_home(history)
    assert not result.ok, result.message


def test_appends_after_lost_records_leave_the_gap_visible(history: Path) -> None:
    truncate_the_last_records(history)
    _invoke(history, ticking_log(history), "s1", b"next\n")
    result = verify_home(history)
    assert result.first_bad_index == 14
    assert "record 17 stands where record 15 belongs: records 15-16 are missing" in result.message
    delete_the_log(history)
    _invoke(history, ticking_log(history), "s1", b"next\n")
    assert "record 19 stands where record 1 belongs: records 1-18 are missing" in (
        verify_home(history).message
    )


def test_a_record_from_another_log_with_the_same_key_is_refused(
    isolated_home: Path, tmp_path: Path
) -> None:
    """The log identity is in every mac: even a copy of the key does not let records move."""
    other = tmp_path / "other-home"
    _invoke(isolated_home, ticking_log(isolated_home), "s1", b"ours\n")
    other.mkdir()
    shutil.copy(_paths(isolated_home)[1], _paths(other)[1])
    _invoke(other, ticking_log(other), "s1", b"theirs\n")
    ours, theirs = _read(isolated_home), _read(other)
    assert ours[0]["log"] != theirs[0]["log"]
    _write(isolated_home, [theirs[0], *ours[1:]])
    result = verify_home(isolated_home)
    assert (result.ok, result.first_bad_index) == (False, 0)
    assert "belongs to another audit log" in result.message


# --------------------------------------------------------------------------- the head


def test_a_lagging_head_verifies(history: Path) -> None:
    head_file = _paths(history)[2]
    before = head_file.read_bytes()
    _invoke(history, ticking_log(history), "s1", b"one more\n")
    head_file.write_bytes(before)  # as if the writers had died before rewriting it
    result = verify_home(history)
    assert (result.ok, result.records) == (True, 18), result.message
    assert "the head is 2 records behind" in result.message
    _invoke(history, ticking_log(history), "s2", b"and another\n")  # brings it up to date
    result = verify_home(history)
    assert (result.ok, result.records) == (True, 20), result.message
    assert "behind" not in result.message
    assert json.loads(head_file.read_bytes())["count"] == 20


def test_a_writer_killed_before_rewriting_the_head(history: Path) -> None:
    """A real process dies between its record and the head: that is a lag, not tampering."""
    script = textwrap.dedent(
        f"""
        import os, sys
        from pathlib import Path
        sys.path.insert(0, {str(REPO)!r})
        from guardctl.recording import audit
        audit.write_head = lambda *args, **kwargs: os._exit(9)
        log = audit.AuditLog(audit.log_path(Path({str(history)!r})))
        log.start(session="s3", argv=["kubectl", "get", "pods"])
        """
    )
    child = subprocess.run([sys.executable, "-c", script], timeout=60)
    assert child.returncode == 9
    result = verify_home(history)
    assert (result.ok, result.records) == (True, 17), result.message
    assert "1 incomplete" in result.message and "1 record behind" in result.message
    _invoke(history, ticking_log(history), "s3", b"later\n")
    assert verify_home(history).ok


def test_records_past_a_lagging_head_need_valid_macs(history: Path) -> None:
    head_file = _paths(history)[2]
    before = head_file.read_bytes()
    _invoke(history, ticking_log(history), "s1", b"one more\n")
    head_file.write_bytes(before)
    records = _read(history)
    records[-1]["exit_code"] = 7
    records[-1]["hash"] = auditkey.record_hash(records[-1])
    _write(history, records)
    result = verify_home(history)
    assert (result.ok, result.first_bad_index) == (False, 17)
    assert "has a wrong mac" in result.message


def test_concurrent_writers_keep_log_and_head_consistent(isolated_home: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        sys.path.insert(0, {str(REPO)!r})
        from guardctl.recording import audit
        log = audit.AuditLog(audit.log_path(Path({str(isolated_home)!r})))
        for n in range(20):
            handle = log.start(session=sys.argv[1], argv=["kubectl", "get", str(n)])
            log.finish(handle, n)
        """
    )
    workers = [subprocess.Popen([sys.executable, "-c", script, f"w{i}"]) for i in range(8)]
    assert [w.wait(timeout=300) for w in workers] == [0] * 8
    result = verify_home(isolated_home)
    assert (result.ok, result.records, result.keyed) == (True, 320, 320), result.message
    assert "behind" not in result.message
    head = json.loads(_paths(isolated_home)[2].read_bytes())
    records = _read(isolated_home)
    assert (head["count"], head["last"]) == (320, records[-1]["hash"])
    assert [r["seq"] for r in records] == list(range(1, 321))
    assert len({r["log"] for r in records}) == 1
    rows = sessions.sessions(audit.log_path(isolated_home))
    assert len(rows) == 160 and all(r["status"] == "completed" for r in rows)


# --------------------------------------------------------------------------- the key


def _malformed(key: Path) -> None:
    key.write_text("not a key\n")


def _empty(key: Path) -> None:
    key.write_bytes(b"")


def _short(key: Path) -> None:
    key.write_text("ab" * 16 + "\n")


def _a_folder(key: Path) -> None:
    key.mkdir()


def _a_symlink(key: Path) -> None:
    target = key.parent.parent / "elsewhere.key"
    target.write_text(os.urandom(32).hex() + "\n")
    key.symlink_to(target)


def _a_fifo(key: Path) -> None:
    os.mkfifo(key)


def _unreadable(key: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    key.write_text(os.urandom(32).hex() + "\n")
    key.chmod(0o000)


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (_malformed, "is not a key"),
        (_empty, "is not a key"),
        (_short, "is not a key"),
        (_a_folder, "is not a regular file"),
        (_a_symlink, "is a symbolic link, not a regular file"),
        (_a_fifo, "is not a regular file"),
        (_unreadable, "cannot be read (Permission denied)"),
    ],
)
def test_a_damaged_key_is_unsafe_and_never_replaced(
    isolated_home: Path, damage: Callable[[Path], None], problem: str
) -> None:
    log_file, key_file, head_file = _paths(isolated_home)
    damage(key_file)
    before = os.lstat(key_file)
    with pytest.raises(UnsafeError) as raised:
        ticking_log(isolated_home).start(session="s1", argv=["kubectl", "get", "pods"])
    message = str(raised.value)
    assert f"the key {key_file} {problem}" in message
    assert "restore it from a backup" in message and "the command was not run" in message
    assert "\n" not in message
    after = os.lstat(key_file)
    assert (after.st_ino, after.st_mtime_ns, after.st_mode) == (
        before.st_ino, before.st_mtime_ns, before.st_mode
    )
    assert log_file.read_bytes() == b"" and not head_file.exists()
    result = verify_home(isolated_home)
    assert not result.ok and f"the key {key_file} {problem}" in result.message


def test_a_damaged_key_stops_appends_to_an_existing_log(history: Path) -> None:
    log_file, key_file, _ = _paths(history)
    key_file.write_text("0" * 63 + "\n")
    size = log_file.stat().st_size
    with pytest.raises(UnsafeError, match="the key .*audit.key is not a key"):
        _invoke(history, ticking_log(history), "s1", b"x\n")
    assert log_file.stat().st_size == size


# --------------------------------------------------------------------------- casts


def test_a_rollback_stays_visible_after_the_session_goes_on(history: Path) -> None:
    roll_the_head_back_and_truncate(history)
    _invoke(history, ticking_log(history), "s1", b"the session goes on\n")
    result = verify_home(history)
    assert result.first_bad_index == 12
    assert "starts cast s1.cast at byte" in result.message
    assert "bytes in between are named by no record (records removed?)" in result.message


def test_invocations_killed_in_a_row_leave_the_casts_consistent(history: Path) -> None:
    log = ticking_log(history)
    for n in range(2):  # started, wrote output, never completed: as if killed
        rec = recorder.open_recording(history, "s1")
        log.start(session="s1", argv=["kubectl", "logs", "-f", str(n)], cast=rec.start_ref())
        rec.output(b"partial\n")
        rec.close()
    _invoke(history, log, "s1", b"after them\n")
    result = verify_home(history)
    assert (result.ok, result.records) == (True, 20), result.message
    assert "2 incomplete" in result.message
