"""A damaged, unreadable or busy keyring file: one line naming the file and the fix, exit 13
(`doctor`: a failed check naming it), never a traceback, and the file left as it was
(issue 13, item 7). Real guardctl processes with the keyrings.alt plaintext file keyring."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from agent_setup import drop_kernel_token

from guardctl import locks
from guardctl.errors import UnsafeError

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None,
                                reason="kubectl is not installed")

TIMEOUT = 60
ONE_BYTE_EACH = bytes(range(256))


def _keyring_file(env: dict[str, str]) -> Path:
    return Path(env["XDG_DATA_HOME"]) / "python_keyring" / "keyring_pass.cfg"


def _token_file(env: dict[str, str]) -> Path:
    return _keyring_file(env).with_name("keyring_pass.guardctl-tokens.cfg")


def _cold(env: dict[str, str]) -> None:
    """No token cached anywhere: the next run must read the stored credential."""
    drop_kernel_token(env)
    _token_file(env).unlink(missing_ok=True)


def _guardctl(env: dict[str, str], *args: str,
              wrap: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*wrap, sys.executable, "-m", "guardctl", *args], env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=TIMEOUT, check=False)


@pytest.fixture
def keyring_file(agent_env: dict[str, str]) -> Iterator[Path]:
    """The agent's keyring file, put back as imported after the test."""
    path = _keyring_file(agent_env)
    good = path.read_bytes()
    _cold(agent_env)
    yield path
    if path.is_dir():
        path.rmdir()
    path.chmod(0o600) if path.exists() else None
    path.write_bytes(good)
    _cold(agent_env)


def _garbage_appended(good: bytes) -> bytes:
    return good + b"this line is not an entry\n"


def _binary_appended(good: bytes) -> bytes:
    return good + b"\xff\xfe\x00\x01 garbage"


def _cut_in_the_value(good: bytes) -> bytes:
    return good[: len(good) * 2 // 3]


def _cut_in_the_header(good: bytes) -> bytes:
    return good[:5]


def _binary(good: bytes) -> bytes:
    return ONE_BYTE_EACH * 4


DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "garbage-appended": _garbage_appended,
    "binary-appended": _binary_appended,
    "cut-in-the-value": _cut_in_the_value,
    "cut-in-the-header": _cut_in_the_header,
    "binary": _binary,
}


def _assert_one_line(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert result.returncode == code, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def _assert_doctor_names(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    failed = [ln for ln in result.stdout.splitlines() if ln.startswith("fail ")]
    assert failed and all(n in failed[0] for n in needles), result.stdout


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_keyring_file_is_named_and_kept(agent_env: dict[str, str],
                                                  keyring_file: Path, damage: str) -> None:
    damaged = DAMAGE[damage](keyring_file.read_bytes())
    keyring_file.write_bytes(damaged)
    fix = ("is damaged", str(keyring_file), f"mv {keyring_file} {keyring_file}.damaged",
           "guardctl creds import --context guardctl-dev")
    _assert_one_line(_guardctl(agent_env, "get", "pods", "-n", "dev"), 13, *fix)
    _assert_one_line(_guardctl(agent_env, "creds", "status"), 13, *fix)
    _assert_doctor_names(_guardctl(agent_env, "doctor"), *fix[:3])
    assert keyring_file.read_bytes() == damaged


def test_an_empty_keyring_file_has_no_credential(agent_env: dict[str, str],
                                                 keyring_file: Path) -> None:
    keyring_file.write_bytes(b"")
    fix = ("no credential for context 'guardctl-dev'", f"(file {keyring_file})",
           "guardctl creds import --context guardctl-dev")
    _assert_one_line(_guardctl(agent_env, "get", "pods", "-n", "dev"), 13, *fix)
    status = _guardctl(agent_env, "creds", "status")
    assert status.returncode == 0, status.stderr
    assert f"file {keyring_file})" in status.stdout
    assert "credential: token, MISSING: run `guardctl creds import" in status.stdout
    _assert_doctor_names(_guardctl(agent_env, "doctor"), *fix)
    assert keyring_file.read_bytes() == b""


# CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH dropped: root then meets file modes as anyone does
NO_OVERRIDE = ("setpriv", "--inh-caps=-all",
               "--bounding-set=-dac_override,-dac_read_search")


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_an_unreadable_keyring_file_is_named_and_kept(agent_env: dict[str, str],
                                                      keyring_file: Path) -> None:
    before = keyring_file.read_bytes()
    keyring_file.chmod(0o000)
    # a fork server's worker would have the server's capabilities, not setpriv's
    agent_env = {**agent_env, "GUARDCTL_FORKSERVER": "0"}
    fix = (f"cannot use the keyring file {keyring_file} (Permission denied)", "chmod 600")
    _assert_one_line(_guardctl(agent_env, "get", "pods", "-n", "dev", wrap=NO_OVERRIDE), 13,
                     *fix)
    _assert_one_line(_guardctl(agent_env, "creds", "status", wrap=NO_OVERRIDE), 13, *fix)
    _assert_doctor_names(_guardctl(agent_env, "doctor", wrap=NO_OVERRIDE), *fix)
    keyring_file.chmod(0o600)
    assert keyring_file.read_bytes() == before


def test_a_folder_in_place_of_the_keyring_file(agent_env: dict[str, str],
                                               keyring_file: Path) -> None:
    keyring_file.unlink()
    keyring_file.mkdir()
    fix = (f"the keyring file {keyring_file} is not a regular file", "move it aside")
    _assert_one_line(_guardctl(agent_env, "get", "pods", "-n", "dev"), 13, *fix)
    _assert_one_line(_guardctl(agent_env, "creds", "status"), 13, *fix)
    _assert_doctor_names(_guardctl(agent_env, "doctor"), *fix)
    assert keyring_file.is_dir()


def test_a_damaged_token_file_is_named_and_the_credential_kept(agent_env: dict[str, str],
                                                               keyring_file: Path) -> None:
    credential = keyring_file.read_bytes()
    tokens = _token_file(agent_env)
    tokens.write_bytes(ONE_BYTE_EACH)
    _assert_one_line(_guardctl(agent_env, "get", "pods", "-n", "dev"), 13,
                     f"the keyring file {tokens} is damaged", "it holds only cached tokens")
    assert tokens.read_bytes() == ONE_BYTE_EACH
    assert keyring_file.read_bytes() == credential


def test_a_busy_lock_is_waited_for_then_named(tmp_path: Path) -> None:
    """Another process holds the lock: a bounded wait, then the one-line `busy` error; once
    it lets go, the lock is taken."""
    path = tmp_path / "keyring_pass.cfg.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, os, sys\n"
         f"fd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT, 0o600)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\n"
         "print('held', flush=True)\n"
         "sys.stdin.read()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(UnsafeError, match="^the keyring file is busy$"):
            with locks.hold(path, exclusive=False, wait=0.2, busy="the keyring file is busy"):
                pass
    finally:
        holder.communicate(input="", timeout=TIMEOUT)
    with locks.hold(path, exclusive=True, wait=TIMEOUT, busy="still busy"):
        assert os.stat(path).st_mode & 0o777 == 0o600


LOCKED_BACKEND = """
import keyring.backend
import keyring.errors


class Locked(keyring.backend.KeyringBackend):
    priority = 1

    def get_password(self, service, username):
        raise keyring.errors.KeyringLocked("locked")

    def set_password(self, service, username, password):
        raise keyring.errors.KeyringLocked("locked")

    def delete_password(self, service, username):
        raise keyring.errors.KeyringLocked("locked")
"""


def test_a_locked_keyring_says_so(agent_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "lockedkeyring.py").write_text(LOCKED_BACKEND)
    drop_kernel_token(agent_env)
    env = {**agent_env, "PYTHONPATH": str(tmp_path), "GUARDCTL_FORKSERVER": "0",
           "PYTHON_KEYRING_BACKEND": "lockedkeyring.Locked"}
    fix = ("the keyring is locked: unlock it",)
    _assert_one_line(_guardctl(env, "get", "pods", "-n", "dev"), 13, *fix)
    _assert_one_line(_guardctl(env, "creds", "status"), 13, *fix)
    _assert_doctor_names(_guardctl(env, "doctor"), *fix)
