"""A signal ends guardctl while it masks a large output, and the record says how it ended.

kubectl here prints a large log of tokens, digests and passwords (masking work on every
line) and is still printing when guardctl gets SIGTERM or SIGINT: guardctl forwards it,
stops, exits as a shell reports a death by that signal, and its audit record holds that
same status. Bounded by a generous timeout, not timed.
"""

from __future__ import annotations

import json
import secrets
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
LOG_LINES = 150_000
TIMEOUT = 60


@pytest.fixture(scope="module")
def busy_kubectl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kubectl whose `logs` prints a large log; everything else is the real kubectl."""
    folder = tmp_path_factory.mktemp("busy")
    log = folder / "big.log"
    with log.open("w") as handle:
        for n in range(LOG_LINES):
            handle.write(f"2026-12-07T10:00:00Z request={secrets.token_hex(16)} "
                         f"sha256:{secrets.token_hex(32)} token={secrets.token_urlsafe(48)} "
                         f"password=hunter{n}\n")
    script = folder / "kubectl"
    script.write_text(
        "#!/bin/sh\n"
        f'case "$*" in *logs*) exec /bin/cat {log};; esac\n'
        f'exec {KUBECTL} "$@"\n'
    )
    script.chmod(0o755)
    return script


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("mode", ["alone", "warm"])
def test_a_signal_ends_a_busy_masked_run_and_is_recorded(
    agent_env: dict[str, str], busy_kubectl: Path, signum: int, mode: str
) -> None:
    env = {**agent_env, "GUARDCTL_KUBECTL": str(busy_kubectl), "GUARDCTL_SESSION": "busy-" + mode,
           **({"GUARDCTL_FORKSERVER": "0"} if mode == "alone" else {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "guardctl", "logs", "app", "-n", "dev"], env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.read(65536)  # masked output is coming
        proc.send_signal(signum)
        proc.stdout.close()  # nobody reads on: guardctl must not wait for a reader
        assert proc.wait(TIMEOUT) == 128 + signum
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    audit = Path(agent_env["GUARDCTL_HOME"]) / "audit.jsonl"
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    ours = [r for r in records if r.get("session") == "busy-" + mode and r["status"] != "started"]
    assert ours and ours[-1]["exit_code"] == 128 + signum
