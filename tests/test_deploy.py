"""The broker's set-up files: the container entrypoint and the systemd unit say what the
command line accepts."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from guardctl.cli import broker_serve

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
ENTRYPOINT = DEPLOY / "container" / "entrypoint.sh"
UNIT = DEPLOY / "systemd" / "guardctl-broker.service"
BROKER_ENV = DEPLOY / "systemd" / "broker.env"


@pytest.fixture
def fake_guardctl(tmp_path: Path) -> Path:
    """A `guardctl` that logs its arguments, one call per line."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls"
    script = bin_dir / "guardctl"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {log}\n')
    script.chmod(0o755)
    return tmp_path


def _entrypoint(root: Path, **values: str) -> subprocess.CompletedProcess[str]:
    environ = {"PATH": f"{root / 'bin'}:/usr/bin:/bin", "HOME": str(root), **values}
    return subprocess.run(["sh", str(ENTRYPOINT)], env=environ, capture_output=True, text=True,
                          timeout=30)


def test_the_entrypoint_serves_the_agents_it_is_given(fake_guardctl: Path) -> None:
    socket = fake_guardctl / "run" / "broker.sock"
    proc = _entrypoint(fake_guardctl, GUARDCTL_AGENT_UIDS="1001 1002", GUARDCTL_AGENT_GIDS="3000",
                       GUARDCTL_APPROVER_UIDS="500", GUARDCTL_SOCKET=str(socket))
    assert proc.returncode == 0, proc.stderr
    (call,) = (fake_guardctl / "calls").read_text().splitlines()
    assert call == (f"broker serve --socket {socket} --agent-user 1001 --agent-user 1002 "
                    "--agent-group 3000 --approver-user 500")
    assert socket.parent.is_dir()
    # and the command line accepts exactly that
    broker_serve.make_context("serve", shlex.split(call)[2:])


def test_the_entrypoint_refuses_to_serve_nobody(fake_guardctl: Path) -> None:
    proc = _entrypoint(fake_guardctl)
    assert proc.returncode == 2 and "GUARDCTL_AGENT_UIDS" in proc.stderr
    assert not (fake_guardctl / "calls").exists()


def test_the_entrypoint_imports_the_credential_once(fake_guardctl: Path) -> None:
    config = fake_guardctl / "config.yaml"
    values = {"GUARDCTL_AGENT_UIDS": "1001", "GUARDCTL_CONFIG": str(config),
              "GUARDCTL_IMPORT_KUBECONFIG": "/secrets/kubeconfig",
              "GUARDCTL_SERVICE_ACCOUNT": "guardctl/agent",
              "GUARDCTL_SOCKET": str(fake_guardctl / "run" / "b.sock")}
    assert _entrypoint(fake_guardctl, **values).returncode == 0
    calls = (fake_guardctl / "calls").read_text().splitlines()
    assert calls[0] == ("creds import --kubeconfig /secrets/kubeconfig "
                        "--service-account guardctl/agent")
    assert calls[1].startswith("broker serve")
    config.write_text("imported\n")
    assert _entrypoint(fake_guardctl, **values).returncode == 0
    assert len((fake_guardctl / "calls").read_text().splitlines()) == 3  # no second import


def test_the_systemd_unit_starts_the_broker_as_the_command_line_reads_it() -> None:
    lines = UNIT.read_text().splitlines()
    (exec_start,) = [ln.split("=", 1)[1] for ln in lines if ln.startswith("ExecStart=")]
    words = shlex.split(exec_start)
    assert words[1:3] == ["broker", "serve"]
    context = broker_serve.make_context("serve", words[3:])
    assert context.params["socket_path"] == "/run/guardctl/broker.sock"
    assert context.params["agent_group"] == ("guardctl-agents",)
    assert "RuntimeDirectoryMode=0755" in lines and "User=guardctl" in lines
    # --socket or --listen is required
    result = CliRunner().invoke(broker_serve, ["--agent-user", "x"])
    assert result.exit_code == 2 and "give --socket PATH, --listen HOST:PORT" in result.output


def test_the_brokers_settings_file_names_only_variables_guardctl_reads() -> None:
    known = {"GUARDCTL_HOME", "GUARDCTL_CONFIG", "GUARDCTL_APPROVAL_TIMEOUT", "XDG_CACHE_HOME",
             "XDG_DATA_HOME", "PYTHON_KEYRING_BACKEND"}
    names = {
        line.split("=", 1)[0] for line in BROKER_ENV.read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert names <= known and "GUARDCTL_HOME" in names
    assert os.access(ENTRYPOINT, os.X_OK)
