"""Several managed contexts: `creds import --context` adds one, kubectl's `--context NAME`
chooses it, and a context guardctl holds no credential for is still denied.

Two devservers stand for two clusters; the real kubectl runs against each, and which server
saw the requests (and as whom) shows which credential was used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from agent_setup import agent_environ

from guardctl.broker import forkcontrol
from guardctl.devserver import DevServer

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
AGENT = "system:serviceaccount:guardctl:guardctl-agent"
SA = "guardctl/guardctl-agent"


def _context(server: DevServer, name: str) -> dict[str, Any]:
    """`server`'s kubeconfig with its cluster, user and context all called `name`."""
    doc = server.kubeconfig(namespace="dev")
    return {
        "cluster": {"name": name, "cluster": doc["clusters"][0]["cluster"]},
        "user": {"name": name, "user": doc["users"][0]["user"]},
        "context": {"name": name, "context": {"cluster": name, "user": name, "namespace": "dev"}},
    }


@pytest.fixture(scope="module")
def clusters() -> Iterator[tuple[DevServer, DevServer]]:
    with DevServer() as prod, DevServer() as staging:
        yield prod, staging


@pytest.fixture(scope="module")
def two_contexts(
    clusters: tuple[DevServer, DevServer], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """An agent's environment with `prod` imported first (the default) and `staging` next."""
    root = tmp_path_factory.mktemp("contexts")
    parts = [_context(clusters[0], "prod"), _context(clusters[1], "staging")]
    admin = root / "admin.kubeconfig"
    admin.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "prod",
        "clusters": [p["cluster"] for p in parts],
        "users": [p["user"] for p in parts],
        "contexts": [p["context"] for p in parts],
    }))
    env = agent_environ(root)
    base = ["creds", "import", "--kubeconfig", str(admin), "--service-account", SA]
    for extra in ([], ["--context", "staging"]):
        proc = guardctl(env, *base, *extra)
        assert proc.returncode == 0, proc.stderr
    yield env
    forkcontrol.stop_all(Path(env["XDG_RUNTIME_DIR"]))


def guardctl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "guardctl", *args], env=env, capture_output=True, timeout=60
    )


def _seen(server: DevServer) -> set[str]:
    """Who the server's requests came as (the admin's are token requests)."""
    return {user for _, _, user in server.requests}


@pytest.mark.parametrize(
    ("words", "which"),
    [
        ([], 0),  # no --context: the default, the first imported
        (["--context", "staging"], 1),
        (["--context=staging"], 1),
        (["--context", "prod"], 0),
    ],
)
def test_context_chooses_the_cluster_and_its_credential(
    two_contexts: dict[str, str], clusters: tuple[DevServer, DevServer],
    words: list[str], which: int,
) -> None:
    for server in clusters:
        server.clear_requests()
    proc = guardctl(two_contexts, *words, "get", "pods", "-n", "dev")
    assert proc.returncode == 0, proc.stderr
    assert b"web-7d4b9c8f6d-x2k9p" in proc.stdout
    assert AGENT in _seen(clusters[which])
    assert _seen(clusters[1 - which]) == set()


@pytest.mark.parametrize("other", ["elsewhere", "prod*", "stag?ng", ""])
def test_a_context_guardctl_does_not_hold_is_denied(
    two_contexts: dict[str, str], clusters: tuple[DevServer, DevServer], other: str
) -> None:
    for server in clusters:
        server.clear_requests()
    proc = guardctl(two_contexts, f"--context={other}", "get", "pods")
    assert proc.returncode == 11, proc.stderr
    assert b"swap-credentials-flag" in proc.stderr
    assert not clusters[0].requests and not clusters[1].requests


def test_check_knows_the_managed_contexts(two_contexts: dict[str, str]) -> None:
    allowed = guardctl(two_contexts, "check", "kubectl --context staging get pods | grep web")
    assert allowed.returncode == 0, allowed.stdout
    denied = guardctl(two_contexts, "check", "kubectl get pods --context kind-kind")
    assert denied.returncode == 11


def test_a_program_naming_a_managed_cluster_is_not_allowed(
    two_contexts: dict[str, str], clusters: tuple[DevServer, DevServer]
) -> None:
    # the servers' own addresses, in programs guardctl cannot see through
    address = clusters[1].url.removeprefix("https://")
    for line in (f"python3 -c 'import urllib.request; urllib.request.urlopen(\"https://{address}\")'",
                 f"curl -k https://{address}/version"):
        proc = guardctl(two_contexts, "check", line)
        assert proc.returncode != 0, (line, proc.stdout)


def test_status_lists_every_context(two_contexts: dict[str, str]) -> None:
    proc = guardctl(two_contexts, "creds", "status")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode()
    assert "context: prod [default]" in out and "context: staging (" in out
    assert out.count("credential: token, present") == 2


def test_reimporting_keeps_the_other_context(
    two_contexts: dict[str, str], tmp_path: Path
) -> None:
    config = Path(two_contexts["GUARDCTL_CONFIG"])
    before = yaml.safe_load(config.read_text())
    admin = Path(two_contexts["GUARDCTL_CONFIG"]).parent / "admin.kubeconfig"
    proc = guardctl(two_contexts, "creds", "import", "--kubeconfig", str(admin),
                    "--context", "staging", "--service-account", SA, "--ttl", "2h")
    assert proc.returncode == 0, proc.stderr
    after = yaml.safe_load(config.read_text())
    assert after["context"] == "prod" and before["context"] == "prod"
    assert [c["context"] for c in after["contexts"]] == ["staging"]
    assert after["contexts"][0]["token-ttl"] == "2h"


def test_through_a_broker_the_agent_chooses_a_managed_context(
    two_contexts: dict[str, str], clusters: tuple[DevServer, DevServer]
) -> None:
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("needs root and runuser to run a broker for another account")
    from broker_setup import running_broker

    admin = Path(two_contexts["GUARDCTL_CONFIG"]).parent / "admin.kubeconfig"
    with running_broker(admin) as broker:
        imported = broker.broker_guardctl("creds", "import", "--kubeconfig", str(admin),
                                          "--context", "staging", "--service-account", SA)
        assert imported.returncode == 0, imported.stderr
        for server in clusters:
            server.clear_requests()
        proc = broker.agent("--context", "staging", "get", "pods", "-n", "dev")
        assert proc.returncode == 0, proc.stderr
        assert AGENT in _seen(clusters[1]) and not clusters[0].requests
        assert broker.agent("--context", "elsewhere", "get", "pods").returncode == 11
        # the agent's own check asks the broker, which knows the contexts
        assert broker.agent("check", "kubectl --context staging get pods").returncode == 0
