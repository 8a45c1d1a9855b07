"""Isolation for every test: a temporary guardctl home and config, no colour, no user rules,
and a runtime folder of the test run's own, so that the fork servers the tests' guardctl
processes start are this run's, and are stopped when it ends."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_setup import agent_environ
from broker_setup import Broker, running_broker

from guardctl.broker import forkcontrol
from guardctl.devserver import DevServer

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def runtime_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    runtime = tmp_path_factory.mktemp("run")
    runtime.chmod(0o700)
    yield runtime
    forkcontrol.stop_all(runtime)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runtime_dir: Path) -> Path:
    home = tmp_path / "guardctl-home"
    home.mkdir()
    monkeypatch.setenv("GUARDCTL_HOME", str(home))
    monkeypatch.setenv("GUARDCTL_CONFIG", str(tmp_path / "config" / "config.yaml"))
    monkeypatch.delenv("GUARDCTL_RULES", raising=False)
    monkeypatch.delenv("GUARDCTL_SESSION", raising=False)
    monkeypatch.delenv("GUARDCTL_BROKER", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyrings.alt.file.PlaintextKeyring")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime_dir))
    return home


@pytest.fixture(scope="module")
def devserver() -> Iterator[DevServer]:
    """The embedded API server on 127.0.0.1, one per test module."""
    with DevServer() as server:
        yield server


@pytest.fixture(scope="module")
def agent_env(
    devserver: DevServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """The environment of an agent whose guardctl was set up as a user would: the devserver's
    admin credential moved into a file keyring with `guardctl creds import`, everything in a
    temporary folder. `ADMIN_KUBECONFIG` lets a test run raw kubectl beside guardctl."""
    root = tmp_path_factory.mktemp("agent")
    admin = devserver.write_kubeconfig(root / "admin.kubeconfig")
    env = {**agent_environ(root), "ADMIN_KUBECONFIG": str(admin)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "guardctl",
            "creds",
            "import",
            "--kubeconfig",
            str(admin),
            "--service-account",
            "guardctl/guardctl-agent",
            "--ttl",
            "10m",
        ],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    yield env
    forkcontrol.stop_all(Path(env["XDG_RUNTIME_DIR"]))


def _running_broker(
    devserver: DevServer, tmp_path_factory: pytest.TempPathFactory,
    environ: dict[str, str] | None = None,
) -> Iterator[Broker]:
    import shutil

    if os.geteuid() != 0 or shutil.which("runuser") is None or shutil.which("kubectl") is None:
        pytest.skip("needs root, runuser and kubectl to run a broker for another account")
    admin = devserver.write_kubeconfig(tmp_path_factory.mktemp("admin") / "admin.kubeconfig")
    with running_broker(admin, extra_environ=environ) as running:
        yield running


@pytest.fixture(scope="module")
def broker(devserver: DevServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A broker run by this (root) account for an unprivileged agent account."""
    yield from _running_broker(devserver, tmp_path_factory)


@pytest.fixture(scope="module")
def patient_broker(devserver: DevServer, tmp_path_factory: pytest.TempPathFactory,
                   ) -> Iterator[Broker]:
    """A broker whose requests wait 60 s: long enough for approvers' consoles and scripts."""
    yield from _running_broker(devserver, tmp_path_factory, {"GUARDCTL_APPROVAL_TIMEOUT": "60"})


@pytest.fixture(scope="module")
def hasty_broker(devserver: DevServer, tmp_path_factory: pytest.TempPathFactory,
                 ) -> Iterator[Broker]:
    """A broker whose requests wait half a second: for tables of lines nobody approves."""
    yield from _running_broker(devserver, tmp_path_factory, {"GUARDCTL_APPROVAL_TIMEOUT": "0.5"})
