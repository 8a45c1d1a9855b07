"""The s3 sink and `audit verify --against s3://…`, against a real S3-compatible server
(moto's server mode, started here on 127.0.0.1) and a log written by real guardctl commands
against the devserver.

The attacks are those of someone who holds the log's key (the broker's account, or in
same-user mode the user): the local checks cannot see them, the shipped heads can.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from guardctl.devserver import DevServer
from guardctl.recording import audit, auditkey, recorder
from guardctl.recording.audit import record_seq
from guardctl.shipping import s3
from guardctl.shipping.base import Entry, ShipContext, ShipError

boto3 = pytest.importorskip("boto3")
REPO = Path(__file__).resolve().parent.parent
BUCKET, PLAIN = "guardctl-audit", "guardctl-plain"
# the commands whose records the tests ship: reads, a denial, one session sharing a cast
COMMANDS = [
    ("s1", ["get", "ns"]),
    ("s1", ["get", "pods", "-n", "default"]),
    ("s2", ["delete", "ns", "kube-system"]),
    ("s1", ["get", "ns", "default", "-o", "name"]),
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """moto's S3 server on a free loopback port, and the AWS variables that reach it (with
    credentials it takes, and no ~/.aws of root's)."""
    port, folder = _free_port(), tmp_path_factory.mktemp("moto")
    server = shutil.which("moto_server", path=os.path.dirname(sys.executable))
    assert server is not None, "moto[server] is in the test extra"
    log = open(folder / "moto.log", "wb")
    proc = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)], stdout=log,
                            stderr=subprocess.STDOUT, cwd=folder)
    environ = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(folder / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(folder / "none"),
    }
    try:
        for _ in range(200):  # bounded: the server takes a second or two to listen
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, (folder / "moto.log").read_text()
                time.sleep(0.05)
        client = boto3.client("s3", endpoint_url=environ["AWS_ENDPOINT_URL"],
                              aws_access_key_id="testing", aws_secret_access_key="testing",
                              region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)
        client.create_bucket(Bucket=PLAIN)
        yield environ
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.fixture(autouse=True)
def aws(s3_server: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    for name, value in s3_server.items():
        monkeypatch.setenv(name, value)
    return s3_server


@pytest.fixture(scope="module")
def recorded(agent_env: dict[str, str], devserver: DevServer) -> Path:
    """A state folder written by real guardctl commands (kubectl against the devserver)."""
    for session, args in COMMANDS:
        subprocess.run([sys.executable, "-m", "guardctl", *args],
                       env={**agent_env, "GUARDCTL_SESSION": session}, capture_output=True,
                       timeout=60, check=False)
    home = Path(agent_env["GUARDCTL_HOME"])
    assert len(audit.log_path(home).read_bytes().splitlines()) == 2 * len(COMMANDS)
    return home


@pytest.fixture
def home(recorded: Path, isolated_home: Path) -> Path:
    """A copy of the recorded state, this test's to attack."""
    shutil.rmtree(isolated_home)
    shutil.copytree(recorded, isolated_home)
    return isolated_home


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    return f"t/{request.node.name}"


# --------------------------------------------------------------------------- helpers


def _entries(home: Path) -> list[Entry]:
    lines = audit.log_path(home).read_bytes().splitlines()
    found = []
    for position, line in enumerate(lines, start=1):
        record = json.loads(line)
        found.append(Entry(record_seq(record) or position, line, record))
    return found


def ship(home: Path, settings: dict[str, Any], batch: int = 3, restarts: bool = False) -> None:
    """Ship the whole log in batches of `batch` records, a head after each (as the
    framework would, though the head read after the batch is the log's latest here);
    `restarts`: a new sink for each batch, as after a restart of the shipper."""
    entries = _entries(home)
    head = auditkey.head_path(audit.log_path(home)).read_bytes()
    ctx = ShipContext(audit.log_path(home), recorder.cast_dir(home), head)
    sink = s3.make(settings)
    try:
        for start in range(0, len(entries), batch):
            if restarts:
                sink.close()
                sink = s3.make(settings)
            sink.send(entries[start:start + batch], ctx)
    finally:
        sink.close()


def verify_against(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "guardctl", "audit", "verify", "--against", url],
                          capture_output=True, text=True, timeout=120, env=os.environ.copy())


def _client() -> Any:
    return boto3.client("s3")


def _keys(prefix: str) -> list[str]:
    listed = _client().list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/")
    return [item["Key"][len(prefix) + 1:] for item in listed.get("Contents", ())]


def _records(home: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in audit.log_path(home).read_bytes().splitlines()]


def _sign_and_write(home: Path, records: list[dict[str, Any]], start: int = 0) -> None:
    """What someone holding the key can do: from record `start` on, links, hashes and macs
    made anew (completions follow their started records' new hashes), and the head."""
    log = audit.log_path(home)
    key = auditkey.load_key(auditkey.key_path(log))
    assert key is not None
    renamed: dict[str, str] = {}
    prev = records[start - 1]["hash"] if start else audit.GENESIS
    for record in records[start:]:
        if record.get("started") in renamed:
            record["started"] = renamed[record["started"]]
        record["prev"] = prev
        old, record["hash"] = record["hash"], auditkey.record_hash(record)
        record["mac"] = auditkey.record_mac(key, record["log"], record["hash"])
        renamed[old] = prev = record["hash"]
    log.write_bytes(b"".join(auditkey.canonical(r) + b"\n" for r in records))
    last = records[-1]
    head = auditkey.make_head(key, last["log"], last["seq"], last["hash"])
    auditkey.head_path(log).write_bytes(head.to_bytes())


def _local_ok() -> None:
    proc = subprocess.run([sys.executable, "-m", "guardctl", "audit", "verify"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr  # the attack is invisible to the local checks


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(("settings", "says"), [
    ({}, "no bucket: add bucket: NAME"),
    ({"bucket": BUCKET, "lifetime": 3}, "unknown key 'lifetime'"),
    ({"bucket": BUCKET, "retention-days": "30"}, "ship.s3.retention-days: '30' is not a whole"),
    ({"bucket": BUCKET, "retention-days": 0}, "ship.s3.retention-days: 0 is not a whole"),
    ({"bucket": BUCKET, "lock-mode": "LEGAL"}, "'LEGAL' is not COMPLIANCE or GOVERNANCE"),
    ({"bucket": BUCKET, "object-lock": "no"}, "ship.s3.object-lock: 'no' is not true or false"),
    ({"bucket": "Not_A_Bucket"}, "is not a bucket name"),
])
def test_settings_are_checked(settings: dict[str, Any], says: str) -> None:
    with pytest.raises(ShipError, match=says):
        s3.make(settings)


def test_a_bucket_without_object_lock_is_refused(home: Path, prefix: str) -> None:
    with pytest.raises(ShipError) as refused:
        ship(home, {"bucket": PLAIN, "prefix": prefix})
    assert "has no Object Lock" in str(refused.value) and "object-lock: false" in str(refused.value)
    assert "\n" not in str(refused.value)
    ship(home, {"bucket": PLAIN, "prefix": prefix, "object-lock": False})  # said explicitly


# --------------------------------------------------------------------------- shipping


def test_shipped_log_verifies_against_the_store(home: Path, prefix: str) -> None:
    ship(home, {"bucket": BUCKET, "prefix": prefix})
    keys = _keys(prefix)
    count = 2 * len(COMMANDS)
    batches = [k for k in keys if k.startswith("records/")]
    assert batches[0].endswith("/000000000001-000000000003.jsonl")
    heads = [k for k in keys if k.startswith("heads/")]
    assert len(heads) == 1 and f"/{count:012d}-" in heads[0]  # one head: the log's latest
    # one part per invocation; those of session s1 follow each other in its cast
    parts = [k.split("/")[2:] for k in keys if k.startswith("casts/")]
    assert len(parts) == len(COMMANDS)
    s1 = [tuple(int(n) for n in name.split("-")[1:]) for cast, name in parts if cast == "s1.cast"]
    assert [start for start, _ in s1] == [0] + [end for _, end in s1[:-1]]
    retention = _client().head_object(Bucket=BUCKET, Key=f"{prefix}/{heads[0]}")
    assert retention["ObjectLockMode"] == "COMPLIANCE"
    assert retention["ObjectLockRetainUntilDate"].year >= time.gmtime().tm_year

    ship(home, {"bucket": BUCKET, "prefix": prefix}, batch=2)  # sent again, cut otherwise
    versions = _client().list_object_versions(Bucket=BUCKET, Prefix=f"{prefix}/heads/")
    assert len(versions["Versions"]) == 1  # put once: never overwritten

    proc = verify_against(f"s3://{BUCKET}/{prefix}")
    assert proc.returncode == 0, proc.stderr
    assert (f"OK, the local log matches 1 shipped head (the latest at record {count}), "
            f"{count} shipped records and {len(COMMANDS)} cast parts") in proc.stdout


def test_an_invocation_started_before_the_sink_ships_its_cast_part(
    home: Path, prefix: str
) -> None:
    ship(home, {"bucket": BUCKET, "prefix": prefix + "/whole"}, batch=100)
    ship(home, {"bucket": BUCKET, "prefix": prefix + "/one-by-one"}, batch=1, restarts=True)
    whole, one_by_one = _keys(prefix + "/whole"), _keys(prefix + "/one-by-one")
    assert [k for k in whole if k.startswith("casts/")] == [
        k for k in one_by_one if k.startswith("casts/")
    ]
    assert len([k for k in one_by_one if k.startswith("records/")]) == 2 * len(COMMANDS)


def test_audit_ship_sends_to_s3_and_the_log_verifies_against_it(home: Path, prefix: str) -> None:
    """End to end: `ship: {s3: …}` in the config (the endpoint there, not in the
    environment), `guardctl audit ship`, `audit verify --against`."""
    pytest.importorskip("guardctl.shipping.shipper")
    config = Path(os.environ["GUARDCTL_CONFIG"])
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f"ship:\n  s3: {{bucket: {BUCKET}, prefix: {prefix}, "
                      f"endpoint: '{os.environ['AWS_ENDPOINT_URL']}', retention-days: 2, "
                      "lock-mode: GOVERNANCE}\n")
    environ = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}
    count = 2 * len(COMMANDS)
    shipped = subprocess.run([sys.executable, "-m", "guardctl", "audit", "ship"], env=environ,
                             capture_output=True, text=True, timeout=120)
    assert shipped.returncode == 0, shipped.stderr
    assert f"s3: shipped {count} records; none pending" in shipped.stdout
    head = f"heads/{_records(home)[-1]['log']}/{count:012d}-{_records(home)[-1]['hash']}.json"
    assert head in _keys(prefix)
    assert _client().head_object(Bucket=BUCKET, Key=f"{prefix}/{head}")["ObjectLockMode"] == (
        "GOVERNANCE"
    )
    proc = subprocess.run(  # the endpoint from ship.s3, as the bucket is the same
        [sys.executable, "-m", "guardctl", "audit", "verify", "--against",
         f"s3://{BUCKET}/{prefix}"], env=environ, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"(the latest at record {count}), {count} shipped records" in proc.stdout


def test_a_broker_ships_to_s3_as_it_records(
    devserver: DevServer, tmp_path: Path, prefix: str, aws: dict[str, str]
) -> None:
    """The broker's own shipper (no `audit ship`): what an agent ran is in the store, and
    the broker's log verifies against it."""
    if os.geteuid() != 0 or shutil.which("runuser") is None or shutil.which("kubectl") is None:
        pytest.skip("needs root, runuser and kubectl to run a broker for another account")
    from broker_setup import running_broker

    admin = devserver.write_kubeconfig(tmp_path / "admin.kubeconfig")
    config = f"ship:\n  s3: {{bucket: {BUCKET}, prefix: {prefix}, retention-days: 1}}\n"
    with running_broker(admin, extra_environ=aws, extra_config=config) as broker:
        assert broker.agent("get", "namespaces").returncode == 0
        log = audit.log_path(broker.state / "home")
        records = len(log.read_bytes().splitlines())
        wanted = f"{records:012d}-"

        def shipped() -> bool:
            return any(k.startswith("heads/") and wanted in k for k in _keys(prefix))

        for _ in range(300):  # bounded: the shipper is woken when the request has ended
            if shipped():
                break
            time.sleep(0.1)
        assert shipped(), (broker.state / "broker.log").read_text()
        proc = broker.broker_guardctl("audit", "verify", "--against", f"s3://{BUCKET}/{prefix}")
        assert proc.returncode == 0, proc.stderr
        assert f"(the latest at record {records}), {records} shipped records" in (
            proc.stdout.decode()
        )


def test_locked_objects_cannot_be_deleted(home: Path, prefix: str) -> None:
    ship(home, {"bucket": BUCKET, "prefix": prefix})
    client = _client()
    versions = client.list_object_versions(Bucket=BUCKET, Prefix=f"{prefix}/heads/")["Versions"]
    with pytest.raises(client.exceptions.ClientError) as refused:
        client.delete_object(Bucket=BUCKET, Key=versions[0]["Key"],
                             VersionId=versions[0]["VersionId"])
    assert refused.value.response["Error"]["Code"] == "AccessDenied"


# --------------------------------------------------------------------------- attacks


def test_records_cut_off_the_end_and_the_head_resigned_are_caught(home: Path, prefix: str) -> None:
    ship(home, {"bucket": BUCKET, "prefix": prefix})
    records = _records(home)[:-2]
    _sign_and_write(home, records)
    ends: dict[str, int] = {}  # and the casts cut where the records left now end
    for record in records:
        if record["status"] == "completed" and record.get("cast"):
            ends[record["cast"]["file"]] = record["cast"]["size"]
    for name, size in ends.items():
        os.truncate(recorder.cast_dir(home) / name, size)
    _local_ok()
    proc = verify_against(f"s3://{BUCKET}/{prefix}")
    assert proc.returncode == 1, proc.stdout
    count = 2 * len(COMMANDS)
    assert (f"records {count - 1}-{count} removed from the end of the local log: a head "
            f"shipped there counts {count} records, the log holds {count - 2}") in proc.stderr


def test_a_middle_record_rewritten_and_rechained_is_caught(home: Path, prefix: str) -> None:
    ship(home, {"bucket": BUCKET, "prefix": prefix})
    records = _records(home)
    assert records[5]["status"] == "completed" and records[5]["exit_code"] == 11
    records[5]["exit_code"] = 0  # the denied delete's completion, made to look allowed
    _sign_and_write(home, records, start=5)
    _local_ok()
    proc = verify_against(f"s3://{BUCKET}/{prefix}")
    assert proc.returncode == 1, proc.stdout
    assert "is not the one shipped (a head shipped there names another hash)" in proc.stderr
    assert "record 6 differs from the copy shipped in records/" in proc.stderr


def test_a_head_put_in_the_store_by_another_key_is_reported(home: Path, prefix: str) -> None:
    ship(home, {"bucket": BUCKET, "prefix": prefix})
    records = _records(home)
    log, count, last = records[-1]["log"], len(records), records[-1]["hash"]
    forged = auditkey.make_head(b"k" * 32, log, count + 1, last)
    _client().put_object(Bucket=BUCKET, Key=f"{prefix}/heads/{log}/{count + 1:012d}-{last}.json",
                         Body=forged.to_bytes())
    proc = verify_against(f"s3://{BUCKET}/{prefix}")
    assert proc.returncode == 1
    assert f"{count + 1:012d}-{last}.json was not signed by the local log's key" in proc.stderr


def test_a_log_never_shipped_is_reported(home: Path, prefix: str) -> None:
    proc = verify_against(f"s3://{BUCKET}/{prefix}")
    assert proc.returncode == 1
    assert "was never shipped there (no head of it)" in proc.stderr


def test_another_log_in_the_store_is_reported(home: Path, prefix: str, tmp_path: Path) -> None:
    ship(home, {"bucket": BUCKET, "prefix": prefix})
    for name in ("audit.jsonl", "audit.key", "audit.head"):
        (home / name).unlink()
    shutil.rmtree(home / "casts")
    _local_ok()  # a fresh start: nothing to check locally
    proc = verify_against(f"s3://{BUCKET}/{prefix}")
    assert proc.returncode == 1
    assert "which is not the local log None: the log was replaced or started anew" in proc.stderr


# --------------------------------------------------------------------------- the store's faults


@pytest.mark.parametrize(("change", "says"), [
    ({"AWS_ENDPOINT_URL": "http://127.0.0.1:1"}, "the store cannot be reached"),
    ({"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None}, "no AWS credentials"),
    ({}, "no such bucket"),
])
def test_store_faults_are_one_line(
    home: Path, monkeypatch: pytest.MonkeyPatch, change: dict[str, str | None], says: str
) -> None:
    for name, value in change.items():
        if value is None:
            monkeypatch.delenv(name)
        else:
            monkeypatch.setenv(name, value)
    proc = verify_against("s3://no-such-bucket/x" if not change else f"s3://{BUCKET}/x")
    assert proc.returncode == 13, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert says in last and "Traceback" not in proc.stderr


@pytest.mark.parametrize("url", ["https://bucket/x", "s3://", "s3://Bad_Bucket/x"])
def test_a_malformed_url_is_a_usage_error(url: str) -> None:
    proc = verify_against(url)
    assert proc.returncode == 2, proc.stderr
    assert "is not s3://BUCKET/PREFIX" in proc.stderr
