"""The broker in a cluster: deploy/kubernetes/ is accepted by an API server (`kubectl apply
--dry-run=server` against the devserver, with the real kubectl), the Deployment starts the
broker as the command line reads it, and the Containerfile builds from files that exist."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from guardctl.cli import broker_serve
from guardctl.devserver import DevServer

REPO = Path(__file__).resolve().parent.parent
MANIFESTS = REPO / "deploy" / "kubernetes"
ENTRYPOINT = REPO / "deploy" / "container" / "entrypoint.sh"
CONTAINERFILE = REPO / "Containerfile"


def _documents() -> list[dict[str, Any]]:
    found = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        found += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


def _one(kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in _documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


@pytest.fixture
def kubectl(devserver: DevServer, tmp_path: Path) -> list[str]:
    found = shutil.which("kubectl")
    if found is None:
        pytest.skip("needs kubectl")
    return [found, "--kubeconfig", str(devserver.write_kubeconfig(tmp_path / "admin.kubeconfig"))]


def test_the_manifests_are_accepted_by_the_api_server(kubectl: list[str]) -> None:
    proc = subprocess.run([*kubectl, "apply", "--dry-run=server", "-f", str(MANIFESTS)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for kind_name in ("deployment.apps/guardctl-broker", "service/guardctl-broker",
                      "serviceaccount/guardctl-broker", "role.rbac.authorization.k8s.io/"
                      "guardctl-broker-mint", "secret/guardctl-broker-credential",
                      "secret/guardctl-broker-tls", "persistentvolumeclaim/guardctl-broker-state",
                      "networkpolicy.networking.k8s.io/guardctl-broker"):
        assert f"{kind_name} " in proc.stdout and "(server dry run)" in proc.stdout, kind_name
    # a dry run changes nothing
    gone = subprocess.run([*kubectl, "get", "deployment", "guardctl-broker", "-n", "guardctl"],
                          capture_output=True, text=True, timeout=60)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


def test_a_broken_manifest_is_refused_by_the_same_check(kubectl: list[str], tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("apiVersion: apps/v1\nkind: Deploymnt\nmetadata: {name: x}\n")
    proc = subprocess.run([*kubectl, "apply", "--dry-run=server", "-f", str(broken)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0


def test_the_broker_may_mint_for_the_agent_and_do_nothing_else() -> None:
    role = _one("Role", "guardctl-broker-mint")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["serviceaccounts/token"],
                              "resourceNames": ["guardctl-agent"], "verbs": ["create"]}]
    bindings = [d for d in _documents() if d["kind"] in ("RoleBinding", "ClusterRoleBinding")]
    held = {b["roleRef"]["name"] for b in bindings if b["subjects"][0]["name"] == "guardctl-broker"}
    # minting for the agent, and TokenReviews for agents that show their ServiceAccount token
    assert held == {"guardctl-broker-mint", "system:auth-delegator"}


def test_the_deployment_starts_the_broker_as_the_command_line_reads_it(tmp_path: Path) -> None:
    deployment = _one("Deployment", "guardctl-broker")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    environ = {item["name"]: item["value"] for item in container["env"]}
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    (bin_dir / "guardctl").write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {calls}\n')
    (bin_dir / "guardctl").chmod(0o755)
    environ = {**environ, "PATH": f"{bin_dir}:/usr/bin:/bin",
               "GUARDCTL_CONFIG": str(tmp_path / "config.yaml"),
               "GUARDCTL_AGENT_SERVICE_ACCOUNTS": "ci/runner ci/nightly"}
    proc = subprocess.run(["sh", str(ENTRYPOINT)], env=environ, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    first, serve = calls.read_text().splitlines()
    assert first.startswith("creds import --kubeconfig /etc/guardctl/credential/kubeconfig")
    words = shlex.split(serve)
    assert words[:2] == ["broker", "serve"]
    params = broker_serve.make_context("serve", words[2:]).params
    assert params["listen"] == "0.0.0.0:8443" and params["socket_path"] is None
    assert params["agent_service_account"] == ("ci/runner", "ci/nightly")
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert params["tls_cert"] == f"{mounts['tls']}/tls.crt"
    assert params["tls_key"] == f"{mounts['tls']}/tls.key"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "guardctl-broker-tls"
    assert environ["GUARDCTL_HOME"].startswith(mounts["state"])  # audit log on the volume
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    port = container["ports"][0]["containerPort"]
    assert params["listen"].endswith(f":{port}")


def test_the_containerfile_copies_files_that_exist_and_runs_as_the_deployments_user() -> None:
    lines = [ln.strip() for ln in CONTAINERFILE.read_text().splitlines()
             if ln.strip() and not ln.lstrip().startswith("#")]
    copies = [shlex.split(ln)[1:-1] for ln in lines if ln.startswith("COPY ")]
    sources = [word for words in copies if not words[0].startswith("--from") for word in words]
    assert sources and all((REPO / source).exists() for source in sources), sources
    assert "COPY deploy/container/entrypoint.sh /usr/local/bin/guardctl-entrypoint" in lines
    assert any(ln.startswith("ENTRYPOINT") and "guardctl-entrypoint" in ln for ln in lines)
    (user,) = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    pod = _one("Deployment", "guardctl-broker")["spec"]["template"]["spec"]
    assert user == f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}"
