"""The pure core's tests on every supported Python found on this machine (issue 13).

`requires-python` says 3.10 and newer; CI runs README's test command on one interpreter, so
this module runs the parser, policy-corpus, masking and regex tests again on each other
supported version it can find (pyenv's versions, `python3.X` on PATH, Debian's
/usr/bin/python3 — a 3.11 other than the running one counts, since 3.11.2 has regex engine
bugs of its own), each in a fresh venv made by uv (a test dependency) from that interpreter.

A supported version that cannot be found is not passed over in silence: it fails under CI
(`CI` set, as .ci/run runs), and is skipped with the reason elsewhere.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from threading import Lock

import pytest

REPO = Path(__file__).resolve().parent.parent
SUPPORTED = ("3.10", "3.11", "3.12", "3.13")
# the pure core's tests that an interpreter can change (no devserver, no kubectl, no
# terminal): its regex engine and parser path (the fuzz tests compare the fast path with
# bashlex and decisions with bash), the policy over the labelled corpus, and the masker's
# line regexes on long inputs; about 100 s each, two interpreters at a time
FILES = (
    "tests/test_regex_portability.py",
    "tests/test_parse_fuzz.py",
    "tests/test_bash_syntax.py",
    "tests/test_corpus.py",
    "tests/test_mask_long.py",
    "tests/test_mask.py::test_runs_of_untouched_lines_change_nothing",
)
RUNNING = ".".join(map(str, sys.version_info[:3]))
HOW_TO_PROVIDE = "install it (`pyenv install {v}`, or a `python{v}` on PATH)"


def _candidates() -> Iterator[Path]:
    for minor in SUPPORTED:
        found = shutil.which(f"python{minor}")
        if found:
            yield Path(found)
    for name in ("python3", *(f"python{m}" for m in SUPPORTED)):
        yield Path("/usr/bin") / name
        yield Path("/usr/local/bin") / name
    roots = {Path(os.environ.get("PYENV_ROOT", "~/.pyenv")), Path("~/.pyenv")}
    roots = {root.expanduser() for root in roots}
    if shutil.which("pyenv"):
        proc = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=30)
        if proc.returncode == 0 and proc.stdout.strip():
            roots.add(Path(proc.stdout.strip()))
    for root in sorted(roots):
        yield from sorted(root.glob("versions/*/bin/python3"))


def _interpreters() -> dict[str, Path]:
    """Full version ("3.11.2") -> an interpreter of it that runs (pyenv shims may not)."""
    found: dict[str, Path] = {}
    for path in _candidates():
        if not os.access(path, os.X_OK):
            continue
        try:
            proc = subprocess.run(
                [str(path), "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                capture_output=True, text=True, timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        version = proc.stdout.strip()
        if proc.returncode == 0 and re.fullmatch(r"\d+\.\d+\.\d+", version):
            found.setdefault(version, path)
    return found


def _minor(version: str) -> str:
    return version.rsplit(".", 1)[0]


def _targets() -> tuple[dict[str, Path], list[str]]:
    """The interpreters to test (every supported patch level but the running one), and the
    supported minor versions of which none was found."""
    found = _interpreters()
    targets = {v: p for v, p in sorted(found.items()) if _minor(v) in SUPPORTED and v != RUNNING}
    seen = {_minor(v) for v in (*targets, RUNNING)}
    return targets, [m for m in SUPPORTED if m not in seen]


TARGETS, MISSING = _targets()


def test_supported_versions_match_requires_python() -> None:
    pyproject = (REPO / "pyproject.toml").read_text()
    assert f'requires-python = ">={SUPPORTED[0]}"' in pyproject
    assert _minor(RUNNING) in SUPPORTED


@pytest.mark.parametrize("minor", MISSING or ["none"])
def test_no_supported_version_is_missing(minor: str) -> None:
    if minor == "none":
        return
    message = f"Python {minor} (supported) was not found on this machine: " + HOW_TO_PROVIDE.format(
        v=minor
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


class _Runs:
    """Each interpreter's venv and test run, two at a time (the machine has two cores)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.install_lock = Lock()  # one editable install of the checkout at a time
        self.pool = ThreadPoolExecutor(max_workers=2)
        self.runs: dict[str, Future[tuple[int, str]]] = {
            version: self.pool.submit(self._run, version, path) for version, path in TARGETS.items()
        }

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
        env.update(
            UV_CACHE_DIR=str(self.base / "uv-cache"),
            UV_PYTHON_DOWNLOADS="never",
            UV_NO_PROGRESS="1",
        )
        return env

    def _run(self, version: str, python: Path) -> tuple[int, str]:
        venv = self.base / f"py{version}"
        uv = [sys.executable, "-m", "uv"]
        env = self._env()
        steps = [
            [*uv, "venv", "-q", "--python", str(python), str(venv)],
            [*uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"),
             "-e", f"{REPO}[mcp]", "pytest", "hypothesis", "pytest-timeout"],
        ]
        with self.install_lock:
            for step in steps:
                proc = subprocess.run(step, capture_output=True, text=True, env=env, timeout=900)
                if proc.returncode != 0:
                    return proc.returncode, f"{' '.join(step)}\n{proc.stdout}{proc.stderr}"
        env["HYPOTHESIS_STORAGE_DIRECTORY"] = str(self.base / f"hypothesis-{version}")
        proc = subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", *FILES],
            cwd=REPO, capture_output=True, text=True, env=env, timeout=1500,
        )
        return proc.returncode, proc.stdout[-6000:] + proc.stderr[-3000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Runs]:
    started = _Runs(tmp_path_factory.mktemp("pythons"))
    yield started
    started.pool.shutdown(wait=True)  # each run ends within its subprocess timeouts


@pytest.mark.timeout(3600)
@pytest.mark.parametrize("version", sorted(TARGETS) or ["none"])
def test_core_tests_pass_on(version: str, runs: _Runs) -> None:
    if version == "none":
        return  # only the running interpreter was found: test_no_supported_version_is_missing
    code, output = runs.runs[version].result()
    assert code == 0, f"Python {version} ({TARGETS[version]}):\n{output}"
