"""README's first two commands, as written, on a machine with no virtual environment active.

The first installs guardctl and runs the demo (this also proves the wheel carries its
rules, data, devserver files and completion scripts). The second is the test suite itself:
CI runs it through `.ci/run`, which must take exactly that line from README.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _commands() -> list[str]:
    blocks, current, inside = [], [], False
    for line in (REPO / "README.md").read_text().splitlines():
        if line == "```sh":
            inside, current = True, []
        elif line == "```" and inside:
            inside = False
            blocks.append("\n".join(current))
        elif inside:
            current.append(line)
    return blocks[:2]


def test_readme_starts_with_install_and_run_then_test() -> None:
    install_and_run, test = _commands()
    assert "pip install ." in install_and_run and "guardctl demo" in install_and_run
    assert "pytest" in test


def test_ci_runs_exactly_the_readme_test_command() -> None:
    proc = subprocess.run(
        ["awk", "/^```sh$/{n++; next} /^```$/{next} n==2 {print; exit}", "README.md"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.strip() == _commands()[1]
    assert (
        "awk '/^```sh$/{n++; next} /^```$/{next} n==2 {print; exit}' README.md"
        in (REPO / ".ci" / "run").read_text()
    )


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="the demo runs the real kubectl")
def test_first_command_on_a_machine_without_a_venv(tmp_path: Path) -> None:
    source = tmp_path / "guardctl"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "*.egg-info", "build", "__pycache__", ".hypothesis", ".*_cache"
        ),
    )
    # a machine with its own Python and no virtual environment active: the command makes one
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GUARDCTL_", "XDG_", "VIRTUAL_ENV", "PYTHON"))
    }
    python_dir = str(Path(os.path.realpath(sys.executable)).parent)  # the one under this venv
    path = [d for d in env["PATH"].split(":") if not d.startswith(sys.prefix)]
    env.update(PATH=":".join([python_dir, *path]), HOME=str(tmp_path / "home"))
    proc = subprocess.run(
        ["bash", "-c", _commands()[0]],
        cwd=source,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (source / ".venv" / "bin" / "guardctl").exists()
    for step in ("allowed", "denied", "approv", "masked", "replay"):
        assert step in proc.stdout.lower(), step
    # the demo kept to its own throwaway home: nothing of the user's was written
    assert not (tmp_path / "home" / ".config" / "guardctl").exists()
    # the wheel carries the completion scripts (the copied checkout is gone)
    shutil.rmtree(source / "completions")
    for shell in ("bash", "zsh", "fish"):
        printed = subprocess.run([str(source / ".venv" / "bin" / "guardctl"), "completion", shell],
                                 env=env, capture_output=True, text=True, timeout=60)
        assert printed.stdout == (REPO / "completions" / f"guardctl.{shell}").read_text()
