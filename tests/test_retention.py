"""Recordings do not grow without bound (issue 13, item 9): the retention settings, the
per-invocation cast cap (head and tail kept, the rest said), `guardctl sessions prune`, and
`doctor`'s line on the state folder's size. End to end with the devserver and kubectl."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from audit_helpers import invoke, ticking_log, verify_home
from test_cast import FakeClock

from guardctl.config import load_contexts
from guardctl.devserver import DevServer
from guardctl.env import Environment
from guardctl.errors import UsageError
from guardctl.recording import audit, cast, prune, recorder, replay, retention, sessions

KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
MiB = 1024**2
DAY = 86400.0


def _guardctl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "guardctl", *args], env=env, capture_output=True, timeout=300
    )


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("text", "size"),
    [("2GiB", 2 * 1024**3), ("64MiB", 64 * MiB), ("500MB", 500 * 1000**2), ("1024", 1024),
     ("10 KiB", 10240), (4096, 4096), ("3kb", 3000)],
)
def test_sizes(text: object, size: int) -> None:
    assert retention.parse_size(text, "x") == size


@pytest.mark.parametrize("text", ["", "2 GB x", "-1", "1.5GiB", "2XB", True, None])
def test_bad_sizes_name_the_key(text: object) -> None:
    with pytest.raises(UsageError, match="retention.max-size: .* is not a size such as"):
        retention.parse_size(text, "retention.max-size")


@pytest.mark.parametrize(("text", "seconds"), [("30d", 30 * DAY), ("12h", 43200), ("2w", 14 * DAY)])
def test_ages(text: str, seconds: float) -> None:
    assert retention.parse_age(text, "x") == seconds


def test_settings_from_the_config_file_beside_contexts(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "context: dev\ncluster: c\nuser: u\nserver: https://127.0.0.1:1\n"
        "certificate-authority-data: ''\nnamespace: default\n"
        "service-account: guardctl/agent\ncredential: token\n"
        "retention: {max-age: 30d, max-size: 2GiB}\ncast-max-size: 8MiB\n"
    )
    assert retention.load_settings(config) == retention.Settings(
        retention.Policy(30 * DAY, 2 * 1024**3), 8 * MiB
    )
    found = load_contexts(config)  # the context still loads with the recording keys there
    assert found is not None and found.default.context == "dev"


@pytest.mark.parametrize(
    ("yaml_text", "error"),
    [("retention: 30d\n", "'retention' must be a mapping"),
     ("retention: {max-age: 30}\n", "retention.max-age: 30 is not an age"),
     ("retention: {keep: 3}\n", "'retention' must be a mapping"),
     ("cast-max-size: 1KiB\n", "cast-max-size must be at least 1MiB")],
)
def test_bad_settings_name_the_file_and_key(tmp_path: Path, yaml_text: str, error: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml_text)
    with pytest.raises(UsageError, match=str(config)) as raised:
        retention.load_settings(config)
    assert error in str(raised.value)


def test_defaults_without_a_config(tmp_path: Path) -> None:
    settings = retention.load_settings(tmp_path / "none.yaml")
    assert settings == retention.Settings(retention.Policy(), 64 * MiB)
    assert retention.settings_of({"cast-max-size": 0}, tmp_path).cast_max_size is None


# --------------------------------------------------------------------------- the cap


def _big_output(total: int) -> list[bytes]:
    line = b"x" * 99 + b"\n"
    chunk = line * 600  # 60,000 bytes, about one pipe read
    return [chunk] * (total // len(chunk))


def test_a_capped_cast_keeps_head_and_tail_and_says_what_it_left_out(
    isolated_home: Path,
) -> None:
    cap = retention.MIN_CAST_MAX_SIZE
    chunks = [b"FIRST LINE\n", *_big_output(8 * MiB), b"LAST LINE\n"]
    clock = FakeClock(0.0)
    with recorder.open_recording(
        isolated_home, "s1", cap=cap, onlcr=True, monotonic=clock
    ) as rec:
        rec.marker("decision: allow")
        for chunk in chunks:
            clock.now += 0.01
            rec.output(chunk)
        clock.now += 5.0
        extent = rec.finish()
    whole = b"".join(chunks)
    assert extent.output is not None
    assert extent.output.size == len(whole)
    assert extent.output.sha256 == hashlib.sha256(whole).hexdigest()
    assert extent.size <= cap + 2 * 65536  # about the cap, never the 8 MiB
    lines = cast.split_lines(rec.path.read_text(encoding="utf-8"))
    events = list(cast.read_events(lines[1:]))
    shown = "".join(e.data for e in events if e.code == cast.OUTPUT)
    assert shown.startswith("FIRST LINE\r\n") and shown.endswith("LAST LINE\r\n")
    note = f"guardctl: {extent.output.left_out} bytes of output left out (cast-max-size)"
    assert (cast.MARKER, note) in [(e.code, e.data) for e in events]
    assert f"[{note}]" in shown
    kept = shown.replace(f"\r\n[{note}]\r\n", "").replace("\r\n", "\n").encode()
    assert len(kept) + extent.output.left_out == len(whole)  # left out: exactly what is missing
    assert [e.time for e in events] == sorted(e.time for e in events)
    # the tail keeps the times it was printed at, not the time the cast was finished
    tail_times = [e.time for e in events[-20:]]
    assert tail_times[0] < tail_times[-1]


def test_an_output_under_the_cap_is_recorded_whole(isolated_home: Path) -> None:
    with recorder.open_recording(isolated_home, "s1", cap=retention.MIN_CAST_MAX_SIZE) as rec:
        rec.output(b"small\n")
        extent = rec.finish()
    assert extent.output is None and "output" not in extent.to_json()


@needs_kubectl
def test_logs_of_a_big_pod_write_a_capped_cast_that_replays(
    agent_env: dict[str, str], devserver: DevServer, tmp_path: Path,
) -> None:
    env = {**agent_env, "GUARDCTL_SESSION": "big-logs"}
    config = Path(env["GUARDCTL_CONFIG"])
    original = config.read_text()
    config.write_text(original + "cast-max-size: 1MiB\n")
    text = '{"msg": "a line with \\"quotes\\" and a tab\\t"}'
    log_lines = [f"{n:08d} {text}" for n in range(60000)]
    devserver.api.logs[("dev", "web-7d4b9c8f6d-q8m4z")] = {"web": log_lines}
    try:
        ran = _guardctl(env, "logs", "web-7d4b9c8f6d-q8m4z", "-n", "dev")
    finally:
        config.write_text(original)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "".join(f"{line}\n" for line in log_lines).encode()  # the agent sees all
    home = Path(env["GUARDCTL_HOME"])
    cast_file = home / "casts" / "big-logs.cast"
    assert len(ran.stdout) > 3 * MiB and cast_file.stat().st_size < 1.2 * MiB
    row = sessions.sessions(audit.log_path(home), session="big-logs")[-1]
    assert row["cast"]["output"]["size"] == len(ran.stdout)
    assert row["cast"]["output"]["sha256"] == hashlib.sha256(ran.stdout).hexdigest()
    assert _guardctl(agent_env, "audit", "verify").returncode == 0
    played = _replay(home, "big-logs")
    assert "00000000 " in played and "00059999 " in played and "left out" in played


def _replay(home: Path, target: str) -> str:
    import io

    out = io.StringIO()
    env = Environment(environ={"GUARDCTL_HOME": str(home)}, stdin=io.StringIO(), stdout=out)
    assert replay.play(target, env, speed=1000.0, idle_limit=0.001, sleep=lambda _s: None) == 0
    return out.getvalue()


# --------------------------------------------------------------------------- prune


def _age(home: Path, name: str, days: float) -> None:
    path = home / "casts" / name
    then = time.time() - days * DAY
    os.utime(path, (then, then))


def _history(home: Path) -> None:
    log = ticking_log(home)
    for session in ("old", "older", "new"):
        invoke(home, log, session, f"{session} output\n".encode())
    _age(home, "older.cast", 60)
    _age(home, "old.cast", 40)


def test_prune_dry_run_removes_nothing_and_says_what_it_would(isolated_home: Path) -> None:
    _history(isolated_home)
    before = sorted(os.listdir(isolated_home / "casts"))
    outcome = prune.prune(isolated_home, retention.Policy(max_age=30 * DAY), dry_run=True)
    assert [c.name for c, _ in outcome.removed] == ["older.cast", "old.cast"]
    assert sorted(os.listdir(isolated_home / "casts")) == before
    lines = prune.summary(outcome)
    assert lines[0].startswith("would remove older.cast (") and "retention.max-age" in lines[0]
    assert lines[-1].startswith("would remove 2 casts") and "1 kept" in lines[-1]


def test_pruned_casts_are_recorded_and_verify_says_so(isolated_home: Path) -> None:
    _history(isolated_home)
    outcome = prune.prune(isolated_home, retention.Policy(max_age=30 * DAY))
    assert sorted(os.listdir(isolated_home / "casts")) == ["new.cast"]
    assert "the audit log keeps their records" in prune.summary(outcome)[-1]
    result = verify_home(isolated_home)
    assert result.ok and "2 casts pruned by retention" in result.message, result.message
    records = [json.loads(x) for x in audit.log_path(isolated_home).read_bytes().splitlines()]
    assert [r["cast"]["file"] for r in records if r["status"] == "pruned"] == [
        "older.cast", "old.cast"
    ]
    assert len(sessions.sessions(audit.log_path(isolated_home))) == 3  # no invocation lost
    # the session goes on in a new cast of the same name
    invoke(isolated_home, ticking_log(isolated_home), "old", b"again\n")
    assert verify_home(isolated_home).ok


def test_a_cast_removed_without_prune_is_still_tampering(isolated_home: Path) -> None:
    _history(isolated_home)
    (isolated_home / "casts" / "old.cast").unlink()
    assert "which cannot be read" in verify_home(isolated_home).message


def test_prune_by_size_takes_the_oldest_first(isolated_home: Path) -> None:
    _history(isolated_home)
    sizes = {c.name: c.size for c in prune.cast_files(isolated_home / "casts")}
    limit = sizes["new.cast"] + sizes["old.cast"]
    outcome = prune.prune(isolated_home, retention.Policy(max_size=limit))
    assert [c.name for c, _ in outcome.removed] == ["older.cast"]
    assert "retention.max-size" in outcome.removed[0][1]


def test_prune_leaves_a_cast_being_written_and_the_callers_session(isolated_home: Path) -> None:
    _history(isolated_home)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, sys; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); "
         "print('held', flush=True); sys.stdin.read()",
         str(isolated_home / "casts" / "older.cast")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        outcome = prune.prune(isolated_home, retention.Policy(max_age=30 * DAY),
                              keep_session="old")
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    assert outcome.removed == []
    assert sorted(c.name for c in outcome.in_use) == ["old.cast", "older.cast"]
    assert "left older.cast" in "\n".join(prune.summary(outcome))
    assert verify_home(isolated_home).ok


def test_a_writer_never_writes_into_a_pruned_cast(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cast pruned between a writer's open and its lock: the writer opens the name again
    (else its events would go to a removed file)."""
    _history(isolated_home)
    real_flock = fcntl.flock
    pruned: list[int] = []

    def prune_first(fd: int, op: int) -> None:
        if not pruned:
            pruned.append(fd)
            prune.prune(isolated_home, retention.Policy(max_age=30 * DAY))
        real_flock(fd, op)

    monkeypatch.setattr(recorder.fcntl, "flock", prune_first)
    invoke(isolated_home, ticking_log(isolated_home), "old", b"again\n")
    monkeypatch.undo()
    assert pruned and (isolated_home / "casts" / "old.cast").read_bytes().count(b"again") == 1
    assert verify_home(isolated_home).ok


@needs_kubectl
def test_sessions_prune_end_to_end(agent_env: dict[str, str], tmp_path: Path) -> None:
    home = Path(agent_env["GUARDCTL_HOME"])
    for session in ("prune-a", "prune-b"):
        ran = _guardctl({**agent_env, "GUARDCTL_SESSION": session}, "get", "ns")
        assert ran.returncode == 0, ran.stderr
    _age(home, "prune-a.cast", 45)
    dry = _guardctl(agent_env, "sessions", "prune", "--dry-run", "--max-age", "30d")
    assert dry.returncode == 0, dry.stderr
    assert b"would remove prune-a.cast" in dry.stdout and (home / "casts/prune-a.cast").exists()
    done = _guardctl(agent_env, "sessions", "prune", "--max-age", "30d")
    assert done.returncode == 0 and b"removed 1 cast" in done.stdout, done.stderr
    assert not (home / "casts/prune-a.cast").exists() and (home / "casts/prune-b.cast").exists()
    verified = _guardctl(agent_env, "audit", "verify")
    assert verified.returncode == 0 and b"pruned by retention" in verified.stdout, verified.stderr
    listed = _guardctl(agent_env, "sessions", "--session", "prune-a")
    assert b"prune-a" in listed.stdout  # the invocation's record stays
    unset = _guardctl({**agent_env, "GUARDCTL_CONFIG": str(tmp_path / "none.yaml")},
                      "sessions", "prune")
    assert unset.returncode == 2 and b"no retention policy" in unset.stderr


def test_doctor_reports_the_state_folders_size(isolated_home: Path) -> None:
    from guardctl import doctor

    _history(isolated_home)
    env = Environment(environ={**os.environ, "GUARDCTL_HOME": str(isolated_home)})
    lines = [f.line() for f in doctor.check_state(env)]
    sized = [line for line in lines if " holds " in line]
    assert len(sized) == 1 and "in 3 casts" in sized[0] and "no retention policy" in sized[0]


def test_saving_the_config_keeps_the_recording_settings(tmp_path: Path) -> None:
    from guardctl.config import load_config, save_config

    config = tmp_path / "config.yaml"
    config.write_text(
        "context: dev\ncluster: c\nuser: u\nserver: https://127.0.0.1:1\n"
        "certificate-authority-data: ''\nnamespace: default\n"
        "service-account: guardctl/agent\ncredential: token\n"
        "retention: {max-age: 30d}\ncast-max-size: 8MiB\n"
    )
    loaded = load_config(config)
    assert loaded is not None
    save_config(config, loaded._replace(namespace="dev"))  # as `creds import` does
    assert retention.load_settings(config).retention.max_age == 30 * DAY
    assert retention.load_settings(config).cast_max_size == 8 * MiB


def test_prune_removes_nothing_while_the_log_does_not_verify(isolated_home: Path) -> None:
    """An edited cast must not vanish through retention (it would launder the edit)."""
    from guardctl.errors import UnsafeError

    _history(isolated_home)
    path = isolated_home / "casts" / "older.cast"
    path.write_bytes(path.read_bytes().replace(b"older output", b"edited output"))
    _age(isolated_home, "older.cast", 60)
    with pytest.raises(UnsafeError, match="older.cast no longer matches .*nothing was pruned"):
        prune.prune(isolated_home, retention.Policy(max_age=30 * DAY))
    assert path.exists()


def test_a_cast_pruned_before_its_invocation_completed_is_not_tampering(
    isolated_home: Path,
) -> None:
    """Prune may take a cast between an invocation's end on it (the lock released) and its
    completed record."""
    log = ticking_log(isolated_home)
    with recorder.open_recording(isolated_home, "s1") as rec:
        handle = log.start(session="s1", argv=["kubectl", "get", "pods"], cast=rec.start_ref())
        rec.output(b"out\n")
        extent = rec.finish()
    _age(isolated_home, "s1.cast", 60)
    prune.prune(isolated_home, retention.Policy(max_age=30 * DAY))
    log.finish(handle, 0, cast=extent)
    result = verify_home(isolated_home)
    assert result.ok and "1 cast pruned" in result.message, result.message
