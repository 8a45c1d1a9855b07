"""The namespaces an approval shows and a window binds come from the manifests too: a
window granted on `apply -f` of a privileged Deployment in `prod` approves the next one in
`prod`, and never one in another namespace — whether its manifest comes from a file, a
pipe, or a kustomization. The real guardctl and kubectl against the devserver; the human
answers with `guardctl approvals approve`.
"""

from __future__ import annotations

import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
from approval_helpers import answered

from guardctl.app import Checker
from guardctl.approvals.queue import Scope, command_namespaces, window_scopes
from guardctl.devserver import DevServer
from guardctl.env import Environment

REPO = str(Path(__file__).resolve().parent.parent)
WAIT = 60
PRIVILEGED = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}{namespace}}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers: [{{name: c, image: nginx, securityContext: {{privileged: true}}}}]
"""


def deployment(name: str, namespace: str | None) -> str:
    return PRIVILEGED.format(name=name, namespace=f", namespace: {namespace}" if namespace else "")


def _write(folder: Path, name: str, text: str) -> str:
    path = folder / name
    path.write_text(text)
    return str(path)


# --------------------------------------------------------------------------- pure


@pytest.mark.parametrize(
    ("documents", "flags", "default_ns", "namespaces"),
    [
        ([("a", "prod")], "", "", ("prod",)),
        ([("a", "prod"), ("b", "dev")], "", "", ("prod", "dev")),
        ([("a", None)], "", "", ("",)),  # no namespace anywhere: the context's
        ([("a", None)], "", "team", ("team",)),
        ([("a", None)], "-n dev", "team", ("dev",)),
        ([("a", "prod"), ("b", None)], "-n dev", "", ("prod", "dev")),
        ([("a", "prod")], "-n prod", "", ("prod",)),
    ],
)
def test_namespaces_come_from_the_manifests(
    tmp_path: Path, documents: list[tuple[str, str | None]], flags: str, default_ns: str,
    namespaces: tuple[str, ...],
) -> None:
    path = _write(tmp_path, "m.yaml", "---\n".join(deployment(n, ns) for n, ns in documents))
    decision = Checker.load(Environment()).check(f"kubectl apply -f {path} {flags}")
    (command,) = decision.commands
    assert command_namespaces(command, default_ns) == namespaces
    assert window_scopes(decision, default_ns) == tuple(
        Scope("privileged-workload", ns) for ns in namespaces)


def test_heredoc_manifest_namespaces() -> None:
    line = f"kubectl apply -f - <<'EOF'\n{deployment('h', 'prod')}EOF"
    decision = Checker.load(Environment()).check(line)
    assert window_scopes(decision, "") == (Scope("privileged-workload", "prod"),)


# --------------------------------------------------------------------------- end to end


def _environ(agent_env: dict[str, str], **extra: str) -> dict[str, str]:
    return {**agent_env, "PYTHONPATH": REPO, **extra}


def _run(environ: dict[str, str], *args: str, stdin: str | None = None,
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "guardctl", *args], env=environ, input=stdin,
                          capture_output=True, text=True, timeout=WAIT,
                          stdin=None if stdin is not None else subprocess.DEVNULL,
                          start_new_session=True)


def _exists(agent_env: dict[str, str], namespace: str, name: str) -> bool:
    """Whether the Deployment is in the cluster, as its admin sees it (a server-side diff
    before the question sends dry-run writes, so the request log cannot tell)."""
    done = subprocess.run(["kubectl", "--kubeconfig", agent_env["ADMIN_KUBECONFIG"], "get",
                           "deployment", name, "-n", namespace, "-o", "name"],
                          capture_output=True, text=True, timeout=WAIT)
    return done.returncode == 0


def test_a_window_on_prod_never_approves_another_namespace(
    agent_env: dict[str, str], devserver: DevServer, tmp_path: Path
) -> None:
    if subprocess.run(["kubectl", "version", "--client"], capture_output=True).returncode:
        pytest.skip("kubectl is not installed")
    environ = _environ(agent_env, GUARDCTL_APPROVAL_TIMEOUT="60")
    first = _write(tmp_path, "prod.yaml", deployment("priv-a", "prod"))
    waiter = subprocess.Popen([sys.executable, "-m", "guardctl", "apply", "-f", first],
                              env=environ, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    item, _, out, err = answered(waiter, partial(_run, environ), "approve", "--window", "10m",
                                 seconds=WAIT)
    assert item["namespaces"] == ["prod"]
    assert item["window_scopes"] == [{"rule": "privileged-workload", "namespace": "prod"}]
    assert waiter.returncode == 0, err
    assert "deployment.apps/priv-a created" in out

    # the window covers the same rule in prod: approved at once, nobody asked
    second = _write(tmp_path, "prod2.yaml", deployment("priv-b", "prod"))
    done = _run(environ, "apply", "-f", second)
    assert done.returncode == 0 and "waiting" not in done.stderr, done.stderr
    assert _exists(agent_env, "prod", "priv-b")

    # anything that touches another namespace asks again, and here nobody answers
    kustomization = tmp_path / "kust"
    kustomization.mkdir()
    _write(kustomization, "d.yaml", deployment("priv-k", None))
    _write(kustomization, "kustomization.yaml", "namespace: dev\nresources: [d.yaml]\n")
    quick = {**environ, "GUARDCTL_APPROVAL_TIMEOUT": "1"}
    attempts = [
        (["apply", "-f", _write(tmp_path, "dev.yaml", deployment("priv-c", "dev"))], None),
        (["apply", "-f", _write(tmp_path, "both.yaml", deployment("priv-d", "prod") + "---\n"
                                + deployment("priv-e", "dev"))], None),
        (["apply", "-f", _write(tmp_path, "bare.yaml", deployment("priv-f", None))], None),
        (["apply", "-f", "-"], deployment("priv-g", "dev")),
        (["apply", "-k", str(kustomization)], None),
    ]
    for args, stdin in attempts:
        done = _run(quick, *args, stdin=stdin)
        assert done.returncode == 12, (args, done.stderr)
        assert "waiting up to 1 s" in done.stderr
    for namespace in ("prod", "dev", "default"):
        for name in "cdefgk":
            assert not _exists(agent_env, namespace, f"priv-{name}")


def test_without_n_the_chosen_contexts_namespace_is_bound(
    devserver: DevServer, tmp_path: Path
) -> None:
    """`--context NAME` without `-n`: the request shows (and a window would bind) that
    context's namespace, not the default context's."""
    import yaml
    from agent_setup import agent_environ

    if subprocess.run(["kubectl", "version", "--client"], capture_output=True).returncode:
        pytest.skip("kubectl is not installed")
    doc = devserver.kubeconfig(namespace="prod")
    cluster, user = doc["clusters"][0]["cluster"], doc["users"][0]["user"]
    admin = tmp_path / "admin.kubeconfig"
    admin.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "first",
        "clusters": [{"name": "c", "cluster": cluster}], "users": [{"name": "u", "user": user}],
        "contexts": [{"name": name, "context": {"cluster": "c", "user": "u", "namespace": ns}}
                     for name, ns in (("first", "prod"), ("second", "dev"))],
    }))
    environ = {**agent_environ(tmp_path), "PYTHONPATH": REPO, "GUARDCTL_APPROVAL_TIMEOUT": "60"}
    base = ["creds", "import", "--kubeconfig", str(admin), "--service-account",
            "guardctl/guardctl-agent"]
    for extra in ([], ["--context", "second"]):
        done = _run(environ, *base, *extra)
        assert done.returncode == 0, done.stderr
    waiter = subprocess.Popen(
        [sys.executable, "-m", "guardctl", "get", "secret", "app-secrets", "-o", "yaml",
         "--context", "second"], env=environ, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    item = answered(waiter, partial(_run, environ), "deny", "--reason", "seen",
                    seconds=WAIT).item
    assert item["context"] == "second" and item["namespaces"] == ["dev"]
    assert item["window_scopes"] == [{"rule": "read-secret-values", "namespace": "dev"}]
