"""Many guardctl processes at once with a cold token cache: the stored credential survives,
every command succeeds and one token is minted for all of them (issue 13, item 1).

Real processes (not threads) against the devserver, with the plaintext file keyring of
keyrings.alt, which rewrites its whole file on every write; and processes writing that
file at once through guardctl's keyring lock, which must lose no entry.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_setup import agent_environ, drop_kernel_token
from keyrings.alt.file import PlaintextKeyring

from guardctl.broker import forkcontrol
from guardctl.devserver import DevServer

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None,
                                reason="kubectl is not installed")

SA = "guardctl/guardctl-agent"
TOKEN_PATH = "/api/v1/namespaces/guardctl/serviceaccounts/guardctl-agent/token"
CONCURRENT = 16
TRIALS = 2
TIMEOUT = 120


def _guardctl(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "guardctl", *args], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def _finish(procs: list[subprocess.Popen[bytes]]) -> list[tuple[int, bytes]]:
    """Each process's exit code and stderr; every process is ended, even on a timeout."""
    results = []
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=TIMEOUT)
            results.append((proc.returncode, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


def _file_keyring(env: dict[str, str]) -> PlaintextKeyring:
    backend = PlaintextKeyring()
    backend.file_path = str(Path(env["XDG_DATA_HOME"]) / "python_keyring" / "keyring_pass.cfg")
    return backend


@pytest.fixture
def setup(devserver: DevServer, tmp_path: Path) -> Iterator[dict[str, str]]:
    """An agent's environment with a freshly imported credential: no token cached anywhere."""
    admin = devserver.write_kubeconfig(tmp_path / "admin.kubeconfig")
    (tmp_path / "agent").mkdir()
    env = agent_environ(tmp_path / "agent")
    imported = subprocess.run(
        [sys.executable, "-m", "guardctl", "creds", "import", "--kubeconfig", str(admin),
         "--service-account", SA, "--ttl", "10m"],
        env=env, capture_output=True, timeout=TIMEOUT, check=False)
    assert imported.returncode == 0, imported.stderr
    try:
        yield env
    finally:
        forkcontrol.stop_all(Path(env["XDG_RUNTIME_DIR"]))
        drop_kernel_token(env)


def _token_requests(server: DevServer) -> int:
    return sum(1 for method, path, _ in server.requests if (method, path) == ("POST", TOKEN_PATH))


@pytest.mark.parametrize("trial", range(TRIALS))
@pytest.mark.parametrize("forkserver", ["on", "off"])
def test_concurrent_cold_runs_keep_the_credential_and_mint_once(
    devserver: DevServer, setup: dict[str, str], forkserver: str, trial: int
) -> None:
    env = {**setup, "GUARDCTL_FORKSERVER": "1" if forkserver == "on" else "0"}
    vault = _file_keyring(env)
    stored = vault.get_password("guardctl", "credential:guardctl-dev")
    assert stored is not None
    before = os.stat(vault.file_path)
    devserver.clear_requests()
    results = _finish([_guardctl(env, "get", "pods", "-n", "dev") for _ in range(CONCURRENT)])
    failed = [(code, err.decode(errors="replace")) for code, err in results if code != 0]
    assert failed == []
    assert vault.get_password("guardctl", "credential:guardctl-dev") == stored
    # the runs never wrote the file that holds the credential
    after = os.stat(vault.file_path)
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (
        before.st_ino, before.st_mtime_ns, before.st_size)
    assert _token_requests(devserver) == 1
    # and a later command still has its credential
    later = _finish([_guardctl(env, "get", "pods", "-n", "dev")])
    assert later[0][0] == 0, later[0][1]


WRITER = """
import sys
from guardctl.running.creds import Vault
vault = Vault("guardctl-test")
for n in range(int(sys.argv[2])):
    vault.set(f"{sys.argv[1]}-{n}", f"value-{sys.argv[1]}-{n}")
"""
ENTRIES_EACH = 10


def test_concurrent_keyring_writes_keep_every_entry(tmp_path: Path) -> None:
    """guardctl's writes to a file keyring are serialised: processes writing entries of their
    own at once lose none of them (the backend alone rewrites the file from what it read)."""
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"),
           "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring"}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, f"w{i}", str(ENTRIES_EACH)],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for i in range(CONCURRENT)]
    assert [code for code, _ in _finish(writers)] == [0] * CONCURRENT
    vault = _file_keyring(env)
    missing = [f"w{i}-{n}" for i in range(CONCURRENT) for n in range(ENTRIES_EACH)
               if vault.get_password("guardctl-test", f"w{i}-{n}") != f"value-w{i}-{n}"]
    assert missing == []
