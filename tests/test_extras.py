"""Optional parts: a command without its extra (`mcp`, `webhook`, `s3`) says what to install,
in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _without(tmp_path: Path, module: str) -> str:
    """A PYTHONPATH where `import MODULE` fails: a finder that refuses to load it."""
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Blocked:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name == {module!r} or name.startswith({module + '.'!r}):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, _Blocked())\n"
    )
    return str(blocker)


@pytest.mark.parametrize(("module", "args", "extra"), [
    ("mcp", ["mcp"], "mcp"),
    # signed answers (approvals sign/keys, the broker's --answers-listen) need Ed25519
    ("cryptography", ["approvals", "keys", "add", "alice", "a.pub"], "webhook"),
    ("boto3", ["audit", "verify", "--against", "s3://audit-bucket/team"], "s3"),
])
def test_a_command_without_its_extra_says_what_to_install(
    tmp_path: Path, module: str, args: list[str], extra: str
) -> None:
    (tmp_path / "a.pub").write_text("whatever\n")
    proc = subprocess.run(
        [sys.executable, "-m", "guardctl", *args], capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": _without(tmp_path, module), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 13
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert f"pip install 'guardctl[{extra}]'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_s3_sink_without_boto3_says_what_to_install(tmp_path: Path) -> None:
    code = ("from guardctl.shipping import s3, base\n"
            "try: s3.make({'bucket': 'audit-bucket'})\n"
            "except base.ShipError as e: print(e)")
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": _without(tmp_path, "boto3")},
    )
    assert proc.stdout == "the s3 sink needs boto3: pip install 'guardctl[s3]'\n", proc.stderr


def test_the_command_line_imports_no_mcp() -> None:
    code = ("import sys, guardctl.cli, guardctl.running.invoke, guardctl.app;"
            " print(any(m == 'mcp' or m.startswith('mcp.') for m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.stdout == "False\n", proc.stderr


@pytest.mark.parametrize("line", [
    "for ns in $(cat list); do kubectl delete ns $ns; done",
    'kubectl get pods -n "$(cat ns)" | grep web && echo ok',
    "(kubectl get secret db -o yaml) > out",
])
def test_check_decides_alike_without_tree_sitter(tmp_path: Path, line: str) -> None:
    # tree-sitter-bash (not installed where it has no wheels) only reads faster what bashlex
    # reads otherwise
    def check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "guardctl", "check", "--json", line], capture_output=True,
            text=True, timeout=60, stdin=subprocess.DEVNULL, cwd=tmp_path,
            env={**os.environ, "GUARDCTL_FORKSERVER": "0", **env},
        )

    with_it = check({})
    without = check({"PYTHONPATH": _without(tmp_path, "tree_sitter")})
    assert (without.returncode, without.stdout) == (with_it.returncode, with_it.stdout)
    assert with_it.returncode in (0, 10, 11) and with_it.stdout, with_it.stderr
