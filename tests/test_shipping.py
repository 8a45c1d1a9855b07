"""Records off the machine (issue 15): the `ship:` config key, `guardctl audit ship`, the
syslog and OTLP sinks against real receivers on 127.0.0.1, a sink that is down and comes
back (nothing lost, nothing sent twice), doctor's lag line, retention that keeps what is not
shipped yet, and a broker that ships as it records."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from audit_helpers import invoke, ticking_log
from broker_setup import AGENT, Broker, running_broker
from ship_receivers import (
    nothing_more,
    otlp_receiver,
    receive_all,
    syslog_fields,
    udp_receiver,
    unix_receiver,
)

from guardctl.devserver import DevServer
from guardctl.recording import audit

DAY = 86400.0


def _guardctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "guardctl", *args], env=env or dict(os.environ),
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )


def _configure(text: str) -> None:
    path = Path(os.environ["GUARDCTL_CONFIG"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _records(home: Path, sessions: int) -> list[bytes]:
    """`sessions` invocations (two records each, with their casts); the log's lines."""
    log = ticking_log(home)
    for n in range(sessions):
        invoke(home, log, f"s{n}", f"output {n}\n".encode())
    return audit.log_path(home).read_bytes().splitlines()


# --------------------------------------------------------------------------- syslog


def test_syslog_over_udp_ships_each_record_once_as_an_rfc5424_line(isolated_home: Path) -> None:
    lines = _records(isolated_home, 2)
    with udp_receiver() as sock:
        port = sock.getsockname()[1]
        _configure(f"ship:\n  syslog: {{address: 'udp://127.0.0.1:{port}', facility: local3}}\n")
        shipped = _guardctl("audit", "ship")
        assert shipped.returncode == 0, shipped.stderr
        assert "syslog: shipped 4 records" in shipped.stdout
        got = [syslog_fields(d) for d in receive_all(sock, 4)]
        assert [g["msg"].encode() for g in got] == lines
        assert [g["seq"] for g in got] == ["1", "2", "3", "4"]
        assert {g["pri"] for g in got} == {str(19 * 8 + 6)}  # local3.info
        assert [g["msgid"] for g in got] == ["started", "completed"] * 2
        assert {g["app"] for g in got} == {"guardctl"}
        # shipped once: a second run sends nothing; a new record goes alone
        again = _guardctl("audit", "ship")
        assert again.returncode == 0 and "syslog: nothing to ship" in again.stdout
        assert nothing_more(sock)
        more = _records(isolated_home, 1)
        assert _guardctl("audit", "ship").returncode == 0
        got = [syslog_fields(d) for d in receive_all(sock, 2)]
        assert [g["msg"].encode() for g in got] == more[4:]
        assert nothing_more(sock)


def test_syslog_to_a_unix_socket(isolated_home: Path, tmp_path: Path) -> None:
    lines = _records(isolated_home, 1)
    path = tmp_path / "log.sock"
    with unix_receiver(path) as sock:
        _configure(f"ship:\n  syslog: {{address: 'unix:{path}'}}\n")
        shipped = _guardctl("audit", "ship")
        assert shipped.returncode == 0, shipped.stderr
        got = [syslog_fields(d) for d in receive_all(sock, 2)]
        assert [g["msg"].encode() for g in got] == lines
        assert {g["pri"] for g in got} == {str(10 * 8 + 6)}  # authpriv.info, the default


# --------------------------------------------------------------------------- otlp


def test_otlp_records_arrive_with_their_fields_as_attributes(isolated_home: Path) -> None:
    lines = _records(isolated_home, 2)
    with otlp_receiver() as receiver:
        _configure(f"ship:\n  otlp: {{endpoint: '{receiver.endpoint}', timeout: 5}}\n")
        shipped = _guardctl("audit", "ship")
        assert shipped.returncode == 0, shipped.stderr
        assert "otlp: shipped 4 records" in shipped.stdout
        assert [r["body"].encode() for r in receiver.records] == lines
        first = receiver.records[0]["attributes"]
        record = json.loads(lines[0])
        assert first["guardctl.seq"] == 1 and first["guardctl.status"] == "started"
        assert first["guardctl.argv"] == record["argv"]
        assert first["guardctl.hash"] == record["hash"]
        assert first["guardctl.cast.file"] == record["cast"]["file"]
        assert first["enduser.id"] == "u"  # no agent: the account that ran it
        assert receiver.records[0]["time"] == 1_700_000_001_000_000_000
        assert receiver.resources[0]["service.name"] == "guardctl"


def test_a_sink_that_is_down_loses_nothing_and_sends_nothing_twice(isolated_home: Path) -> None:
    _records(isolated_home, 2)
    with otlp_receiver() as first:
        port = first.port
        _configure(f"ship:\n  otlp: {{endpoint: '{first.endpoint}', timeout: 2}}\n")
        assert _guardctl("audit", "ship").returncode == 0
        assert len(first.records) == 4
    # down: nothing listens on the port
    lines = _records(isolated_home, 2)
    failed = _guardctl("audit", "ship")
    assert failed.returncode == 13, failed.stdout + failed.stderr
    assert failed.stderr.count("\n") == 1 and "Traceback" not in failed.stderr
    assert "otlp" in failed.stderr and "4 records" in failed.stderr
    doctor = _guardctl("doctor")
    lag = [line for line in doctor.stdout.splitlines() if "ship" in line]
    assert len(lag) == 1 and lag[0].startswith("warn"), doctor.stdout
    assert "otlp: 4 records not shipped" in lag[0] and "the oldest from" in lag[0]
    assert "last error" in lag[0]
    # up again: exactly the records it missed
    with otlp_receiver(port) as second:
        shipped = _guardctl("audit", "ship")
        assert shipped.returncode == 0, shipped.stderr
        assert [r["body"].encode() for r in second.records] == lines[4:]
    doctor = _guardctl("doctor")
    assert any(line.startswith("ok") and "otlp: every record shipped" in line
               for line in doctor.stdout.splitlines()), doctor.stdout


def test_what_is_far_behind_goes_in_bounded_batches(isolated_home: Path) -> None:
    from guardctl.shipping.shipper import BATCH_RECORDS

    lines = _records(isolated_home, BATCH_RECORDS // 2 + 3)
    with otlp_receiver() as receiver:
        _configure(f"ship:\n  otlp: {{endpoint: '{receiver.endpoint}'}}\n")
        assert _guardctl("audit", "ship").returncode == 0
        assert receiver.requests == 2
        assert [r["body"].encode() for r in receiver.records] == lines


def test_a_new_log_is_noticed_and_shipped_from_its_start(isolated_home: Path) -> None:
    _records(isolated_home, 2)
    with otlp_receiver() as receiver:
        _configure(f"ship:\n  otlp: {{endpoint: '{receiver.endpoint}'}}\n")
        assert _guardctl("audit", "ship").returncode == 0
        old = isolated_home / "old"
        old.mkdir()
        for name in ("audit.jsonl", "audit.head", "audit.key"):
            (isolated_home / name).rename(old / name)
        lines = _records(isolated_home, 1)
        shipped = _guardctl("audit", "ship")
        assert shipped.returncode == 0, shipped.stderr
        assert "a new audit log" in shipped.stdout
        assert [r["body"].encode() for r in receiver.records[4:]] == lines


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("text", "named"),
    [("ship: 5\n", "'ship'"),
     ("ship: {kafka: {}}\n", "ship.kafka"),
     ("ship: {syslog: 3}\n", "ship.syslog"),
     ("ship: {syslog: {adress: 'udp://127.0.0.1:514'}}\n", "adress"),
     ("ship: {syslog: {address: 'ftp://127.0.0.1:514'}}\n", "address"),
     ("ship: {syslog: {address: 'udp://127.0.0.1:514', facility: kern2}}\n", "facility"),
     ("ship: {otlp: {}}\n", "endpoint"),
     ("ship: {otlp: {endpoint: 'http://127.0.0.1:4318/v1/logs', timeout: soon}}\n", "timeout"),
     ("ship: {otlp: {endpoint: 'http://127.0.0.1:4318/v1/logs', headers: [a]}}\n", "headers")],
)
def test_a_bad_ship_setting_is_one_line_naming_the_key(
    isolated_home: Path, text: str, named: str
) -> None:
    _configure(text)
    for args in (("audit", "ship"), ("sessions", "prune", "--max-age", "30d")):
        proc = _guardctl(*args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert named in proc.stderr and "ship" in proc.stderr
    doctor = _guardctl("doctor")
    assert any(line.startswith("fail") and named in line for line in doctor.stdout.splitlines())


def test_audit_ship_without_sinks_says_how_to_configure_them(isolated_home: Path) -> None:
    proc = _guardctl("audit", "ship")
    assert proc.returncode == 2 and "ship:" in proc.stderr and proc.stderr.count("\n") == 1


def test_the_kubectl_path_imports_no_shipping_code(
    agent_env: dict[str, str], tmp_path: Path
) -> None:
    config = Path(agent_env["GUARDCTL_CONFIG"])
    original = config.read_text()
    config.write_text(original + "ship:\n  otlp: {endpoint: 'http://127.0.0.1:9/v1/logs'}\n")
    try:
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "guardctl", "get", "namespaces"],
            env={**agent_env, "GUARDCTL_FORKSERVER": "0"}, capture_output=True, text=True,
            timeout=120, stdin=subprocess.DEVNULL,
        )
    finally:
        config.write_text(original)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = proc.stderr
    assert "guardctl.recording.audit" in imported  # the record was written in this process
    assert "guardctl.shipping" not in imported and "opentelemetry" not in imported


# --------------------------------------------------------------------------- retention


def test_prune_keeps_the_casts_of_records_not_yet_shipped(isolated_home: Path) -> None:
    _records(isolated_home, 2)
    casts = isolated_home / "casts"
    for cast in casts.iterdir():
        then = time.time() - 60 * DAY
        os.utime(cast, (then, then))
    _configure("ship:\n  otlp: {endpoint: 'http://127.0.0.1:9/v1/logs', timeout: 1}\n")
    kept = _guardctl("sessions", "prune", "--max-age", "30d")
    assert kept.returncode == 0, kept.stderr
    assert sorted(p.name for p in casts.iterdir()) == ["s0.cast", "s1.cast"]
    assert "left s0.cast" in kept.stdout and "not shipped yet (otlp)" in kept.stdout
    with otlp_receiver() as receiver:
        _configure(f"ship:\n  otlp: {{endpoint: '{receiver.endpoint}'}}\n")
        assert _guardctl("audit", "ship").returncode == 0
        pruned = _guardctl("sessions", "prune", "--max-age", "30d")
        assert pruned.returncode == 0, pruned.stderr
        assert list(casts.iterdir()) == []


# --------------------------------------------------------------------------- the broker


@pytest.fixture()
def shipping_broker(
    devserver: DevServer, tmp_path: Path
) -> Iterator[tuple[Broker, object]]:
    if os.geteuid() != 0 or shutil.which("runuser") is None or shutil.which("kubectl") is None:
        pytest.skip("needs root, runuser and kubectl to run a broker for another account")
    admin = devserver.write_kubeconfig(tmp_path / "admin.kubeconfig")
    with otlp_receiver() as receiver:
        config = f"ship:\n  otlp: {{endpoint: '{receiver.endpoint}', timeout: 2}}\n"
        with running_broker(admin, extra_config=config) as broker:
            yield broker, receiver


def _wait_for(predicate: object, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_the_broker_ships_what_it_records(shipping_broker: tuple[Broker, object]) -> None:
    from ship_receivers import OtlpReceiver

    broker, receiver = shipping_broker
    assert isinstance(receiver, OtlpReceiver)
    log = (broker.state / "broker.log").read_text()
    assert "shipping to otlp" in log, log
    ran = broker.agent("get", "namespaces")
    assert ran.returncode == 0, ran.stderr
    assert _wait_for(lambda: len(receiver.records) >= 2), receiver.records
    shipped = receiver.lines()
    assert [r["status"] for r in shipped[-2:]] == ["started", "completed"]
    assert receiver.records[-1]["attributes"]["enduser.id"] == AGENT
    assert receiver.records[-1]["attributes"]["guardctl.agent"] == AGENT
    # down, then up again on the same port: what it recorded meanwhile arrives, once
    port = receiver.port
    receiver.stop()
    for _ in range(2):
        assert broker.agent("get", "namespaces").returncode == 0
    local = audit.log_path(broker.state / "home").read_bytes().splitlines()
    with otlp_receiver(port) as again:
        assert _wait_for(lambda: len(again.records) >= 4, 60.0), again.records
        assert [r["body"].encode() for r in again.records] == local[-4:]


def test_the_brokers_shipper_ends_with_the_broker(devserver: DevServer, tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("runuser") is None or shutil.which("kubectl") is None:
        pytest.skip("needs root, runuser and kubectl to run a broker for another account")
    admin = devserver.write_kubeconfig(tmp_path / "admin.kubeconfig")
    config = "ship:\n  syslog: {address: 'udp://127.0.0.1:9'}\n"
    with running_broker(admin, extra_config=config) as broker:
        log = (broker.state / "broker.log").read_text()
        pid = int(log.split("shipping to syslog (pid ")[1].split(")")[0])
        assert Path(f"/proc/{pid}").exists()
    assert _wait_for(lambda: not Path(f"/proc/{pid}").exists(), 10.0)


def test_a_broker_with_a_bad_ship_setting_does_not_start(
    devserver: DevServer, tmp_path: Path
) -> None:
    if os.geteuid() != 0 or shutil.which("runuser") is None or shutil.which("kubectl") is None:
        pytest.skip("needs root, runuser and kubectl to run a broker for another account")
    admin = devserver.write_kubeconfig(tmp_path / "admin.kubeconfig")
    config = "ship:\n  syslog: {address: 'udp://127.0.0.1'}\n"
    with pytest.raises(RuntimeError) as failed:
        with running_broker(admin, extra_config=config):
            pass
    message = str(failed.value)
    assert "ship.syslog" in message and "address" in message and "Traceback" not in message


# --------------------------------------------------------------------------- the backlog


def test_a_batch_takes_whole_records_only_and_passes_over_torn_lines(tmp_path: Path) -> None:
    from guardctl.shipping.backlog import Cursor, read_batch, still_there

    log = tmp_path / "audit.jsonl"
    first = b'{"hash":"a","seq":1,"log":"L"}'
    second = b'{"hash":"b","seq":2,"log":"L"}'
    log.write_bytes(first + b'\n{"cut sho\n' + second + b'\n{"hash":"c","se')
    entries, cursor = read_batch(log, Cursor(), 10, 1 << 20)
    assert [(e.seq, e.line) for e in entries] == [(1, first), (2, second)]
    assert cursor.offset == log.read_bytes().rindex(b"\n") + 1 and cursor.log == "L"
    assert read_batch(log, cursor, 10, 1 << 20) == ([], cursor)  # the last line is not whole
    assert still_there(log, cursor)
    one, after_one = read_batch(log, Cursor(), 1, 1 << 20)
    assert [e.seq for e in one] == [1] and after_one.offset == len(first) + 1
    log.write_bytes(second + b"\n" + first + b"\n")  # another log, longer than the cursor
    assert not still_there(log, after_one)
