"""A real broker for tests: the test's account (root in CI) runs it, an unprivileged agent
account talks to it.

The broker's state (config, keyring file, rules cache, audit log, casts, approvals) lives in a
folder only root can enter. The agent gets a world-readable copy of guardctl, a working
folder of its own, and runs `guardctl` with an interpreter it may execute, in a clean
environment whose only guardctl setting is GUARDCTL_BROKER.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import pexpect

REPO = Path(__file__).resolve().parent.parent
AGENT = "gctest-agent"
OTHER = "gctest-other"
READY_SECONDS = 60.0


def ensure_user(name: str) -> int:
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True, capture_output=True,
        )
        return pwd.getpwnam(name).pw_uid


def runs_as(user: str, python: str) -> bool:
    proc = subprocess.run(
        ["runuser", "-u", user, "--", python, "-c",
         "import sys; assert sys.version_info >= (3, 11)"],
        capture_output=True,
    )
    return proc.returncode == 0


def agent_python(user: str) -> str | None:
    """An interpreter the agent account may run: this one, else the system's."""
    for candidate in (sys.executable, "/usr/bin/python3"):
        if os.path.exists(candidate) and runs_as(user, candidate):
            return candidate
    return None


class Broker(NamedTuple):
    socket: Path
    shared: Path  # world-traversable: lib/ (guardctl), bin/ (guardctl, kubectl shim), sock/
    work: Path  # the agent's own working folder
    state: Path  # the broker's private root (0700)
    environ: dict[str, str]  # the broker's environment
    admin_kubeconfig: Path
    process: subprocess.Popen[bytes]
    python: str

    def agent_environ(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {
            "PATH": f"{self.shared / 'bin'}:/usr/bin:/bin",
            "HOME": str(self.work),
            "GUARDCTL_BROKER": str(self.socket),
            "PYTHONPATH": str(self.shared / "lib"),
            "LANG": "C.UTF-8",
            **(extra or {}),
        }

    def command(
        self, user: str, argv: list[str], extra: Mapping[str, str] | None = None
    ) -> list[str]:
        """ARGV as `user`, in the agent's clean environment (plus `extra`)."""
        environ = self.agent_environ(extra)
        return ["runuser", "-u", user, "--", "env", "-i",
                *(f"{k}={v}" for k, v in environ.items()), *argv]

    def as_user(
        self, user: str, argv: list[str], *, stdin: bytes | None = None,
        extra: Mapping[str, str] | None = None, timeout: float = 60, cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            self.command(user, argv, extra), input=stdin, capture_output=True, timeout=timeout,
            cwd=cwd or self.work, stdin=None if stdin is not None else subprocess.DEVNULL,
        )

    def agent_popen(self, *args: str) -> subprocess.Popen[bytes]:
        """`guardctl ARGS` as the agent, in the background, in a session of its own (no
        terminal: what it asks is queued for `guardctl approvals`)."""
        return subprocess.Popen(
            self.command(AGENT, [str(self.shared / "bin" / "guardctl"), *args]), cwd=self.work,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True,
        )

    def agent(self, *args: str, **kwargs: object) -> subprocess.CompletedProcess[bytes]:
        """`guardctl ARGS` as the agent."""
        return self.as_user(AGENT, [str(self.shared / "bin" / "guardctl"), *args], **kwargs)  # type: ignore[arg-type]

    def agent_shell(self, script: str, **kwargs: object) -> subprocess.CompletedProcess[bytes]:
        """A bash script as the agent: `guardctl` and the `kubectl` shim are on its PATH."""
        return self.as_user(AGENT, ["/bin/bash", "-c", script], **kwargs)  # type: ignore[arg-type]

    def broker_guardctl(self, *args: str, stdin: bytes | None = None,
                        extra: Mapping[str, str] | None = None,
                        ) -> subprocess.CompletedProcess[bytes]:
        """`guardctl ARGS` as the broker's own account, on its state (no broker: local)."""
        return subprocess.run(
            [sys.executable, "-m", "guardctl", *args], env={**self.environ, **(extra or {})},
            input=stdin, capture_output=True, timeout=60,
        )

    def approver_terminal(self, *args: str) -> pexpect.spawn:
        """`guardctl ARGS` as the approver (the broker's account) through the socket, in a
        terminal of its own."""
        return pexpect.spawn(
            sys.executable, ["-m", "guardctl", *args],
            env={**self.environ, "GUARDCTL_BROKER": str(self.socket),
                 "GUARDCTL_APPROVAL_TIMEOUT": "30"},
            timeout=30, dimensions=(50, 150),
        )

    def admin_kubectl(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        kubectl = shutil.which("kubectl")
        assert kubectl is not None
        return subprocess.run([kubectl, "--kubeconfig", str(self.admin_kubeconfig), *args],
                              capture_output=True, timeout=60)


def _agent_tree(shared: Path, python: str) -> None:
    lib = shared / "lib"
    shutil.copytree(REPO / "guardctl", lib / "guardctl",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "rules", lib / "guardctl" / "bundled_rules")
    # what the agent's own commands (doctor, mcp's adapter) import besides the client
    import click
    import yaml

    for module in (click, yaml):
        folder = Path(module.__file__ or "").parent
        shutil.copytree(folder, lib / folder.name, ignore=shutil.ignore_patterns("__pycache__"))
    bin_dir = shared / "bin"
    bin_dir.mkdir()
    (bin_dir / "guardctl").write_text(f'#!/bin/sh\nexec {python} -P -m guardctl "$@"\n')
    (bin_dir / "kubectl").write_text('#!/bin/sh\n# guardctl shim\nexec guardctl kubectl "$@"\n')
    for path in [shared, *shared.rglob("*")]:
        mode = 0o755 if path.is_dir() or path.parent == bin_dir else 0o644
        path.chmod(mode)


@contextmanager
def running_broker(
    devserver_kubeconfig: Path, extra_args: tuple[str, ...] = (),
    extra_environ: Mapping[str, str] | None = None, extra_config: str = "",
) -> Iterator[Broker]:
    """A broker serving AGENT, with credentials imported from the devserver's admin
    (`extra_config`: YAML added to its config file after that)."""
    agent_uid = ensure_user(AGENT)
    ensure_user(OTHER)
    python = agent_python(AGENT)
    if python is None:
        raise RuntimeError("no Python the agent account may run")
    shared = Path(tempfile.mkdtemp(prefix="guardctl-broker-", dir="/tmp"))
    state = Path(tempfile.mkdtemp(prefix="guardctl-broker-state-", dir="/tmp"))
    state.chmod(0o700)
    process: subprocess.Popen[bytes] | None = None
    try:
        _agent_tree(shared, python)
        work = shared / "work"
        work.mkdir()
        os.chown(work, agent_uid, -1)
        work.chmod(0o700)
        sock_dir = shared / "sock"
        sock_dir.mkdir(mode=0o755)
        runtime = state / "run"
        runtime.mkdir(mode=0o700)
        admin = state / "admin.kubeconfig"
        shutil.copy(devserver_kubeconfig, admin)
        environ = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(state),
            "GUARDCTL_HOME": str(state / "home"),
            "GUARDCTL_CONFIG": str(state / "config" / "config.yaml"),
            "XDG_CACHE_HOME": str(state / "cache"),
            "XDG_DATA_HOME": str(state / "data"),
            "XDG_RUNTIME_DIR": str(runtime),
            "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
            "GUARDCTL_APPROVAL_TIMEOUT": "3",
            "NO_COLOR": "1",
            "GUARDCTL_FORKSERVER": "0",
            **(extra_environ or {}),
        }
        subprocess.run(
            [sys.executable, "-m", "guardctl", "creds", "import", "--kubeconfig", str(admin),
             "--service-account", "guardctl/guardctl-agent", "--ttl", "10m"],
            env=environ, check=True, capture_output=True, timeout=60,
        )
        if extra_config:
            config = Path(environ["GUARDCTL_CONFIG"])
            config.write_text(config.read_text() + extra_config)
        socket_path = sock_dir / "broker.sock"
        log = state / "broker.log"
        with open(log, "wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "guardctl", "broker", "serve", "--socket",
                 str(socket_path), "--agent-user", AGENT, *extra_args],
                env=environ, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log_file,
            )
        deadline = time.monotonic() + READY_SECONDS
        while b"ready on" not in log.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the broker did not start: {log.read_text()}")
            time.sleep(0.05)
        yield Broker(socket_path, shared, work, state, environ, admin, process, python)
    finally:
        if process is not None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(shared, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)
