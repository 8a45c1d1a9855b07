"""guardctl as pip installs it: a wheel built from this checkout, installed into a clean venv.

The `guardctl` command is bin/guardctl, not a generated entry-point script: pip's own script
imports `re` (with `enum` and `functools`) before guardctl runs, which would cost every
agent's command more than the client's whole work."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "bin" / "guardctl"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A venv without pip holding only guardctl's wheel (its dependencies reach it through
    a `.pth` naming this interpreter's site-packages); its `bin` folder."""
    root = tmp_path_factory.mktemp("install")
    # built from a copy: pip builds in the source tree, and its build/ would stay in the checkout
    source = root / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".*", "build", "*.egg-info", "__pycache__", "tests", "bench", "node_modules"))
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(root / "wheel"), str(source)],
                   check=True, capture_output=True, timeout=600)
    (wheel,) = (root / "wheel").glob("guardctl-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True, timeout=600)
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    (Path(purelib) / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    yield venv / "bin"


def test_the_command_is_bin_guardctl_under_the_venvs_interpreter(installed: Path) -> None:
    written = (installed / "guardctl").read_text()
    shebang, _, rest = written.partition("\n")
    assert shebang == f"#!{installed / 'python'}"
    assert rest == SCRIPT.read_text().partition("\n")[2]
    assert os.access(installed / "guardctl", os.X_OK)


def test_the_command_imports_nothing_of_its_own_before_guardctl(
    installed: Path, tmp_path: Path
) -> None:
    """What finished importing before guardctl's package started is the interpreter's own
    start-up (as `python -c pass` has it), nothing the script added."""

    def imported_first(argv: list[str]) -> set[str]:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"})
        names = [line.rpartition("|")[2].strip() for line in proc.stderr.splitlines()
                 if line.startswith("import time:") and "|" in line]
        first = next((i for i, name in enumerate(names) if name.startswith("guardctl")),
                     len(names))
        return set(names[:first])

    bare = imported_first([str(installed / "python"), "-c", "pass"])
    before = imported_first([str(installed / "guardctl"), "--version"])
    assert "re" not in before
    assert before <= bare | {"sitecustomize", "usercustomize"}, before - bare


def test_the_installed_command_runs(installed: Path) -> None:
    proc = subprocess.run([str(installed / "guardctl"), "--version"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("guardctl, version ")
