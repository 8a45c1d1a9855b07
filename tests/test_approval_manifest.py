"""What a human is shown of a manifest guardctl cannot diff from a file: `apply -f -` shows
the manifest read from stdin (masked) and its real server-side diff; where there is no
diff, the request says why. The real guardctl and kubectl against the devserver.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from approval_helpers import answered

REPO = str(Path(__file__).resolve().parent.parent)
WAIT = 60
TOKEN = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
MANIFEST = f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: priv-stdin, namespace: dev}}
spec:
  selector: {{matchLabels: {{app: s}}}}
  template:
    metadata: {{labels: {{app: s}}}}
    spec:
      containers:
        - name: c
          image: nginx
          securityContext: {{privileged: true}}
          env: [{{name: GITHUB_TOKEN, value: {TOKEN}}}]
"""

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl")


def _environ(agent_env: dict[str, str]) -> dict[str, str]:
    return {**agent_env, "PYTHONPATH": REPO, "GUARDCTL_APPROVAL_TIMEOUT": "60"}


def _guardctl(environ: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "guardctl", *args], env=environ,
                          capture_output=True, text=True, timeout=WAIT,
                          stdin=subprocess.DEVNULL)


def _asked(environ: dict[str, str], args: list[str], stdin: str | None) -> dict[str, Any]:
    """Run `guardctl ARGS` as an agent would (pipes, no terminal); return the request it
    queued as `approvals list --json` shows it, after declining it."""
    waiter = subprocess.Popen([sys.executable, "-m", "guardctl", *args], env=environ,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    done = answered(waiter, lambda *a: _guardctl(environ, *a), "deny", "--reason", "seen",
                    stdin=stdin, seconds=WAIT)
    assert waiter.returncode == 12
    return done.item


def test_stdin_manifest_is_shown_masked_with_its_diff(agent_env: dict[str, str]) -> None:
    item = _asked(_environ(agent_env), ["apply", "-f", "-"], MANIFEST)
    manifest, diff = str(item["manifest"]), str(item["diff"])
    assert "kind: Deployment" in manifest and "privileged: true" in manifest
    assert TOKEN not in manifest and "«masked:" in manifest
    assert not diff.startswith("diff unavailable"), diff
    assert "+kind: Deployment" in diff and "priv-stdin" in diff
    assert TOKEN not in diff
    assert item["namespaces"] == ["dev"]


def test_no_diff_says_why(agent_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "d.yaml").write_text(MANIFEST.replace(", namespace: dev", ""))
    (tmp_path / "kustomization.yaml").write_text("namespace: dev\nresources: [d.yaml]\n")
    item = _asked(_environ(agent_env), ["apply", "-k", str(tmp_path)], None)
    assert item["diff"] == "diff unavailable: kubectl diff is not run on kustomizations (-k)"
    assert item["manifest"] is None


def test_through_the_broker_the_approver_sees_the_agents_manifest(patient_broker: Any) -> None:
    broker = patient_broker
    through = {"GUARDCTL_BROKER": str(broker.socket)}
    agent = subprocess.Popen(
        broker.command("gctest-agent", [str(broker.shared / "bin" / "guardctl"), "apply", "-f",
                                        "-"]),
        cwd=broker.work, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True)
    approver = partial(broker.broker_guardctl, extra=through)
    item = answered(agent, approver, "deny", "--reason", "seen", stdin=MANIFEST.encode(),
                    seconds=WAIT).item
    assert agent.returncode == 12
    assert "privileged: true" in item["manifest"] and TOKEN not in item["manifest"]
    assert "+kind: Deployment" in item["diff"] and TOKEN not in item["diff"]
    assert item["requester"].startswith("gctest-agent (uid ")
