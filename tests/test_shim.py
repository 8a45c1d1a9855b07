"""`guardctl shim install`: a kubectl that goes through guardctl, and never taken for kubectl."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from guardctl import runtime
from guardctl.agents import shim
from guardctl.env import Environment
from guardctl.errors import UsageError
from guardctl.running.runner import find_kubectl, is_shim

FAKE_KUBECTL = "#!/bin/sh\necho real-kubectl \"$@\"\n"


def _env(path: str = "") -> Environment:
    return Environment(stdout=io.StringIO(), environ={**os.environ, "PATH": path})


def _fake_kubectl(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "kubectl"
    path.write_text(FAKE_KUBECTL)
    path.chmod(0o755)
    return path


def test_install_writes_an_executable_shim(tmp_path: Path) -> None:
    env = _env()
    path = shim.install(env, tmp_path / "bin")
    assert path == tmp_path / "bin" / "kubectl"
    assert path.stat().st_mode & 0o777 == 0o755
    assert is_shim(path)
    text = path.read_text()
    assert text.startswith("#!/bin/sh\n") and 'kubectl "$@"' in text
    advice = env.stdout.getvalue()  # type: ignore[attr-defined]
    assert f"export PATH={tmp_path / 'bin'}:\"$PATH\"" in advice


def test_advice_when_already_first_on_path(tmp_path: Path) -> None:
    env = _env(f"{tmp_path}:/usr/bin")
    shim.install(env, tmp_path)
    assert "already first on PATH" in env.stdout.getvalue()  # type: ignore[attr-defined]


def test_find_kubectl_skips_the_shim(tmp_path: Path) -> None:
    shim.install(_env(), tmp_path / "shim")
    real = _fake_kubectl(tmp_path / "real")
    env = _env(f"{tmp_path / 'shim'}:{tmp_path / 'real'}")
    assert find_kubectl(env) == str(real)


@pytest.mark.parametrize("content", [FAKE_KUBECTL, "\x7fELF binary kubectl"])
def test_install_refuses_to_replace_a_real_kubectl(tmp_path: Path, content: str) -> None:
    target = tmp_path / "kubectl"
    target.write_text(content)
    with pytest.raises(UsageError, match="not a guardctl shim"):
        shim.install(_env(), tmp_path)
    assert target.read_text() == content


def test_install_replaces_its_own_shim_and_a_dangling_link(tmp_path: Path) -> None:
    shim.install(_env(), tmp_path)
    shim.install(_env(), tmp_path)  # again: idempotent
    other = tmp_path / "other"
    other.mkdir()
    (other / "kubectl").symlink_to(tmp_path / "nowhere")
    path = shim.install(_env(), other)
    assert not path.is_symlink() and is_shim(path)
    assert not (tmp_path / "nowhere").exists()  # the link was replaced, not followed


def test_launcher_without_script_is_this_interpreter() -> None:
    words = runtime.launcher(prefer_script=False)
    assert words[0] == sys.executable and words[-2:] == ["-m", "guardctl"]


@pytest.mark.parametrize(
    ("line", "code", "said"),
    [
        ("kubectl delete ns prod", 11, b"delete-namespace"),
        ("for v in delete; do kubectl $v ns prod; done", 11, b"delete-namespace"),
        ("kubectl get pods -n dev", 13, b"no credentials"),  # guardctl ran it, not kubectl
    ],
)
def test_the_shim_sends_kubectl_through_guardctl(
    tmp_path: Path, line: str, code: int, said: bytes
) -> None:
    shim.install(_env(), tmp_path / "shim")
    _fake_kubectl(tmp_path / "real")
    environ = {**os.environ, "PATH": f"{tmp_path / 'shim'}:{tmp_path / 'real'}:/usr/bin:/bin"}
    proc = subprocess.run(["bash", "-c", line], env=environ, capture_output=True, timeout=60)
    assert proc.returncode == code, proc.stderr
    assert said in proc.stderr
    assert b"real-kubectl" not in proc.stdout
