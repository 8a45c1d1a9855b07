"""Same-user mode against an agent that tries what it can without reading files.

Same-user mode is advisory (the agent could read this user's keyring file; the broker is
the boundary). But what guardctl can hold here, it must: an agent's kubectl takes the
settings of whoever set up its entry point (`sh -c`, the installed shim, the hook), not the
environment at run time, and kubectl runs with an environment guardctl built, so nothing
the agent exports reaches it. Each row is a bash snippet, run from a Python script the line
names (so the static check sees only `python3 attack.py`, as it would for an agent's own
script) under `guardctl sh -c`, and run directly with the installed shim first on PATH;
both against the devserver and the real kubectl.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

from guardctl.devserver import DevServer

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")

LOOSE = "rules:\n  - {id: delete-namespace, disabled: true}\n"
STEAL = "#!/bin/sh\nenv > {work}/stolen\n"
CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: su, namespace: dev}}\n"


class Attack(NamedTuple):
    id: str
    script: str
    absent: tuple[str, ...] = ()


ATTACKS = [
    Attack("a script sets the rules variable, then runs kubectl",
           "GUARDCTL_RULES={work}/loose.yaml kubectl delete ns prod"),
    Attack("an exported rules file and state folder",
           "export GUARDCTL_RULES={work}/loose.yaml GUARDCTL_HOME={work}/h;"
           " kubectl delete ns prod"),
    Attack("another home, where the agent keeps its own config and approval windows",
           "mkdir -p {work}/fakehome; HOME={work}/fakehome XDG_CONFIG_HOME= XDG_STATE_HOME="
           " kubectl delete ns prod"),
    Attack("another kubectl, which would get the minted token",
           "export GUARDCTL_KUBECTL={work}/steal.sh; kubectl get pods -n dev",
           absent=("{work}/stolen",)),
    Attack("Python code loaded into guardctl",
           "mkdir -p {work}/py/guardctl; echo 'open(\"{work}/stolen\",\"w\")' >"
           " {work}/py/guardctl/__init__.py; PYTHONPATH={work}/py kubectl get pods -n dev",
           absent=("{work}/stolen",)),
    Attack("an external diff",
           "KUBECTL_EXTERNAL_DIFF={work}/steal.sh kubectl diff -f {work}/cm.yaml",
           absent=("{work}/stolen",)),
    Attack("a diff earlier on PATH",
           "mkdir -p {work}/bin; cp {work}/steal.sh {work}/bin/diff;"
           " PATH={work}/bin:$PATH kubectl diff -f {work}/cm.yaml",
           absent=("{work}/stolen",)),
    Attack("an editor for kubectl edit",
           "KUBE_EDITOR={work}/steal.sh EDITOR={work}/steal.sh kubectl edit cm app-config -n dev",
           absent=("{work}/stolen",)),
]


@pytest.fixture
def work(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "loose.yaml").write_text(LOOSE)
    (folder / "cm.yaml").write_text(CONFIGMAP.format())
    steal = folder / "steal.sh"
    steal.write_text(STEAL.format(work=folder))
    steal.chmod(0o755)
    return folder


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.id for a in ATTACKS])
def test_sh_c_holds(agent_env: dict[str, str], devserver: DevServer, work: Path,
                    attack: Attack) -> None:
    script = work / "attack.py"
    script.write_text(
        f"import subprocess, sys\nsys.exit(subprocess.run(['bash', '-c', "
        f"{attack.script.format(work=work)!r}]).returncode)\n"
    )
    decided = subprocess.run(
        [sys.executable, "-m", "guardctl", "check", f"python3 {script}"], env=agent_env,
        capture_output=True, timeout=60,
    )
    assert decided.returncode == 0, "the static check must let the script run"
    proc = subprocess.run(
        [sys.executable, "-m", "guardctl", "sh", "-c", f"python3 {script}"],
        env=agent_env, capture_output=True, timeout=120, cwd=work,
    )
    _holds(agent_env, devserver, work, attack, proc.stdout + proc.stderr)


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.id for a in ATTACKS])
def test_the_installed_shim_holds(agent_env: dict[str, str], devserver: DevServer, work: Path,
                                  attack: Attack, tmp_path: Path) -> None:
    shim = tmp_path / "shim"
    installed = subprocess.run(
        [sys.executable, "-m", "guardctl", "shim", "install", str(shim)],
        env=agent_env, capture_output=True, timeout=60,
    )
    assert installed.returncode == 0, installed.stderr
    environ = {**agent_env, "PATH": f"{shim}:{agent_env['PATH']}"}
    proc = subprocess.run(
        ["bash", "-c", attack.script.format(work=work)],
        env=environ, capture_output=True, timeout=120, cwd=work,
    )
    _holds(agent_env, devserver, work, attack, proc.stdout + proc.stderr)


def _holds(agent_env: dict[str, str], devserver: DevServer, work: Path, attack: Attack,
           seen: bytes) -> None:
    admin = ["kubectl", "--kubeconfig", agent_env["ADMIN_KUBECONFIG"]]
    assert subprocess.run([*admin, "get", "ns", "prod"], capture_output=True).returncode == 0
    for token in devserver.all_tokens():
        assert token.encode() not in seen
    for place in attack.absent:
        assert not Path(place.format(work=work)).exists(), place
    assert os.environ.get("GUARDCTL_RULES") is None
