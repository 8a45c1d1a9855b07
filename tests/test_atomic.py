"""Atomic writes never replace what is not a regular file (issue 13: `GUARDCTL_CONFIG=/dev/null
guardctl creds import` as root replaced the device for every user)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from guardctl.atomic import write_atomic
from guardctl.errors import UsageError


def test_a_regular_file_is_replaced_whole(tmp_path: Path) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    target = folder / "config.yaml"
    target.write_text("old\n")
    write_atomic(target, "new\n")
    assert target.read_text() == "new\n"
    assert [p.name for p in folder.iterdir()] == ["config.yaml"]


@pytest.mark.parametrize("kind", ["fifo", "folder", "link-to-fifo", "device"])
def test_what_is_not_a_regular_file_is_refused(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "target"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "folder":
        target.mkdir()
    elif kind == "link-to-fifo":
        os.mkfifo(tmp_path / "fifo")
        target.symlink_to(tmp_path / "fifo")
    else:
        target = Path(os.devnull)
    before = os.lstat(target)
    with pytest.raises(UsageError, match="is not a regular file"):
        write_atomic(target, "x\n")
    after = os.lstat(target)
    assert (before.st_mode, before.st_ino) == (after.st_mode, after.st_ino)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left


KUBECONFIG = """apiVersion: v1
kind: Config
current-context: dev
clusters: [{name: dev, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: admin, user: {token: abcdefghijklmnop}}]
contexts: [{name: dev, context: {cluster: dev, user: admin}}]
"""


def test_creds_import_over_a_fifo_is_one_line_and_changes_nothing(tmp_path: Path) -> None:
    # as GUARDCTL_CONFIG=/dev/null did, with a FIFO of the test's own (a regression must not
    # touch the machine's /dev): the file and its folder stay as they were
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    folder = tmp_path / "etc"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    target = folder / "config.yaml"
    os.mkfifo(target)
    before = os.lstat(target)
    proc = subprocess.run(
        [sys.executable, "-m", "guardctl", "creds", "import", "--kubeconfig", str(kubeconfig),
         "--service-account", "guardctl/agent"],
        env={**os.environ, "GUARDCTL_CONFIG": str(target),
             "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring"},
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2 and "is not a regular file" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    after = os.lstat(target)
    assert (before.st_mode, before.st_ino) == (after.st_mode, after.st_ino)
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o755  # a folder that was there: untouched
