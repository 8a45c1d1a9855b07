"""Issue 11's classes end to end: each runnable line of the table, run as an agent would run
it, in same-user mode (`guardctl sh -c LINE`) and through a broker (the agent account's
`guardctl sh -c LINE`, with the kubectl shim on its PATH), with the real kubectl against the
devserver.

A line the policy holds (a rule that needs a human, nobody answering, or a deny) must leave
the cluster as it was and leave no trace of a program of the agent's having run; a line that
should work (reads, diffs, kubectl's own errors, variables guardctl keeps away from kubectl)
must work, and what it carried must never reach kubectl.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from broker_setup import AGENT, Broker

# a program of the agent's: whatever runs it leaves a mark (and what it was given)
STEAL = "#!/bin/sh\nenv > {work}/stolen\n"
PRIVILEGED_POD = (
    "apiVersion: v1\nkind: Pod\nmetadata: {name: pwned, namespace: dev}\nspec:\n"
    "  containers:\n  - name: c\n    image: busybox\n    securityContext: {privileged: y}\n"
)
CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app-config, namespace: dev}\n"
# kubectl >= 1.33 reads a kuberc: this one would turn every `get` into JSON
KUBERC = (
    "apiVersion: kubectl.config.k8s.io/v1beta1\nkind: Preference\n"
    "defaults:\n- command: get\n  options:\n  - name: output\n    default: json\n"
)
FILES = {
    "steal.sh": STEAL,
    "cm.yaml": CONFIGMAP,
    "privileged-y.yaml": PRIVILEGED_POD,
    "~/cm.yaml": PRIVILEGED_POD,  # what `-f '~/cm.yaml'` reads: kubectl expands no `~`
    "home/cm.yaml": CONFIGMAP,  # ... not the harmless file in the agent's home
    "kust/kustomization.yaml": "resources: [cm.yaml]\n",
    "kust/cm.yaml": CONFIGMAP,
    "kust-priv/kustomization.yaml": "resources: [pod.yaml]\n",
    # kustomize writes `privileged: y` back as the string "y", which no API server takes
    "kust-priv/pod.yaml": PRIVILEGED_POD.replace("privileged: y", "privileged: true"),
    "kuberc.yaml": KUBERC,
}
HELD = (10, 11, 12)  # needs a human (nobody answers), denied


class Row(NamedTuple):
    id: str
    line: str
    rule: str | None  # the rule that holds it; None: the line runs
    out: str = ""  # for a line that runs: text its output holds
    status: int = 0  # ... and its exit status


ROWS = [
    # programs that carry kubectl
    Row("python-c", "python3 -c 'import os; os.system(\"kubectl delete ns prod\")'",
        "hidden-kubectl"),
    Row("perl-e", "perl -e 'system(\"kubectl delete ns prod\")'", "hidden-kubectl"),
    Row("awk-system", "awk 'BEGIN { system(\"kubectl delete ns prod\") }'", "hidden-kubectl"),
    Row("python-heredoc",
        "python3 - <<'PY'\nimport subprocess\nsubprocess.run(['kubectl', 'delete', 'ns', "
        "'prod'])\nPY", "hidden-kubectl"),
    Row("script-c", "script -qc 'kubectl delete ns prod' /dev/null", "delete-namespace"),
    Row("pipe-to-bash", "echo 'kubectl delete ns prod' | bash", "not fully understood"),
    Row("xargs", "xargs kubectl delete ns <<< prod", "delete-namespace"),
    Row("timeout", "timeout 30 kubectl delete ns prod", "delete-namespace"),
    Row("plugin-by-name", "./kubectl-pwn delete ns prod", "hidden-kubectl"),
    # kubectl's other inputs: flags are refused, variables and files never reach kubectl
    Row("kuberc-flag", "kubectl get pods -n dev --kuberc ./kuberc.yaml", "kubectl-steering"),
    Row("profile-output", "kubectl get pods -n dev --profile=cpu --profile-output=./stolen",
        "kubectl-steering"),
    Row("cache-dir", "kubectl get pods -n dev --cache-dir=./stolen", "kubectl-steering"),
    Row("dump-directory", "kubectl cluster-info dump --output-directory=./stolen",
        "kubectl-steering"),
    Row("helm-command", "kubectl kustomize --enable-helm --helm-command=./steal.sh ./kust",
        "kubectl-steering"),
    Row("external-diff", "KUBECTL_EXTERNAL_DIFF=./steal.sh kubectl diff -f cm.yaml", None,
        status=1, out="app-config"),
    Row("kuberc-variable", "KUBERC=./kuberc.yaml kubectl get pods -n dev", None,
        out="web-7d4b9c8f6d-x2k9p"),
    Row("proxy-variable", "HTTPS_PROXY=http://127.0.0.1:9 kubectl get pods -n dev", None,
        out="web-7d4b9c8f6d-x2k9p"),
    Row("editor-variable", "KUBE_EDITOR=./steal.sh kubectl edit cm app-config -n dev",
        "edit-in-editor"),
    # spellings that reach the same change
    Row("pod-security-label",
        "kubectl label ns dev pod-security.kubernetes.io/enforce=privileged --overwrite",
        "pod-security-label"),
    Row("pod-security-json-patch",
        "kubectl patch ns dev --type=json -p '[{\"op\":\"add\",\"path\":"
        "\"/metadata/labels/pod-security.kubernetes.io~1enforce\",\"value\":\"privileged\"}]'",
        "pod-security-label"),
    Row("cordon-by-patch", "kubectl patch node node-1 -p '{\"spec\":{\"unschedulable\":true}}'",
        "node-scheduling"),
    Row("noexecute-taint", "kubectl taint nodes node-1 k=v:NoExecute", "node-scheduling"),
    Row("zero-as-hex", "kubectl scale deploy web -n dev --replicas=0x0", "scale-to-zero"),
    Row("zero-by-patch", "kubectl patch deploy web -n dev -p '{\"spec\":{\"replicas\":0}}'",
        "scale-to-zero"),
    Row("raw-collection-delete", "kubectl delete --raw /api/v1/namespaces/dev/pods",
        "bulk-delete"),
    Row("set-serviceaccount", "kubectl set serviceaccount deploy web -n dev default",
        "service-account-change"),
    Row("yaml-1.1-yes", "kubectl apply -f privileged-y.yaml", "privileged-workload"),
    Row("quoted-tilde", "kubectl apply -f '~/cm.yaml'", "privileged-workload"),
    Row("kustomize-render", "kubectl apply -k ./kust-priv", "privileged-workload"),
    Row("kustomize-pipe", "kubectl kustomize ./kust-priv | kubectl apply -f -",
        "privileged-workload"),
    # secret values through reads
    Row("env-by-jsonpath",
        "kubectl get deploy web -n dev -o "
        "jsonpath='{.spec.template.spec.containers[*].env[*].value}'",
        "read-values-by-template"),
    Row("set-env-resolve", "kubectl set env deploy/web -n dev --list --resolve",
        "read-secret-values"),
    # the other way: lines that must work
    Row("diff-is-a-read", "kubectl diff -f cm.yaml", None, status=1, out="app-config"),
    # kubectl's own error and status (diff: over 1 is a failure, 1 means differences)
    Row("diff-of-a-missing-file", "kubectl diff -f missing.yaml", None, status=2,
        out='the path "missing.yaml" does not exist'),
    Row("diff-of-a-kustomization", "kubectl diff -k ./kust", None, status=1, out="app-config"),
    Row("pipe-into-grep", "kubectl get pods -n dev | grep x2k9p", None,
        out="web-7d4b9c8f6d-x2k9p"),
    # decided before bash runs, an unknown word could be a plugin found on PATH later: held
    # (`guardctl aprovals` run directly is kubectl's error at once: test_broker_e2e, test_cli)
    Row("unknown-command", "kubectl aprovals", "not fully understood"),
]


def _fingerprint(kubectl: Callable[..., subprocess.CompletedProcess[bytes]]) -> list[str]:
    """Every object of the kinds the table could change, with its resourceVersion and the
    labels of namespaces (what the held lines would have changed)."""
    proc = kubectl("get", "namespaces,nodes,deployments,pods,configmaps,serviceaccounts",
                   "-A", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    return sorted(
        f"{item['kind']}/{item['metadata'].get('namespace', '')}/{item['metadata']['name']}"
        f"@{item['metadata'].get('resourceVersion')}"
        for item in json.loads(proc.stdout)["items"]
    )


def _lay_out(work: Path, owner: int | None) -> None:
    """The files the table's lines name, in the agent's working folder."""
    for name, text in FILES.items():
        path = work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.replace("{work}", str(work)))
    (work / "steal.sh").chmod(0o755)
    plugin = work / "kubectl-pwn"
    plugin.write_text(STEAL.replace("{work}", str(work)))
    plugin.chmod(0o755)
    if owner is not None:
        for path in [work, *work.rglob("*")]:
            os.chown(path, owner, -1)


class Mode(NamedTuple):
    run: Callable[[str], subprocess.CompletedProcess[bytes]]
    work: Path
    kubectl: Callable[..., subprocess.CompletedProcess[bytes]]


@pytest.fixture(scope="module")
def same_user(agent_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Mode:
    work = tmp_path_factory.mktemp("fw-work")
    _lay_out(work, None)
    environ = {**agent_env, "HOME": str(work / "home"), "GUARDCTL_APPROVAL_TIMEOUT": "0.5"}

    def run(line: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-m", "guardctl", "sh", "-c", line],
                              env=environ, cwd=work, capture_output=True, timeout=120,
                              stdin=subprocess.DEVNULL)

    def kubectl(*args: str) -> subprocess.CompletedProcess[bytes]:
        binary = shutil.which("kubectl")
        assert binary is not None
        return subprocess.run([binary, "--kubeconfig", agent_env["ADMIN_KUBECONFIG"], *args],
                              capture_output=True, timeout=60)

    return Mode(run, work, kubectl)


@pytest.fixture(scope="module")
def brokered(hasty_broker: Broker) -> Mode:
    broker = hasty_broker
    work = broker.work / "fw"
    work.mkdir()
    _lay_out(work, pwd.getpwnam(AGENT).pw_uid)

    def run(line: str) -> subprocess.CompletedProcess[bytes]:
        return broker.as_user(AGENT, [str(broker.shared / "bin" / "guardctl"), "sh", "-c", line],
                              cwd=work, extra={"HOME": str(work / "home")}, timeout=120)

    return Mode(run, work, broker.admin_kubectl)


@pytest.fixture(params=["same-user", "broker"])
def mode(request: pytest.FixtureRequest) -> Iterator[Mode]:
    chosen: Mode = request.getfixturevalue("same_user" if request.param == "same-user"
                                           else "brokered")
    yield chosen
    for leftover in ("stolen", "pwned"):
        path = chosen.work / leftover
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_the_line_is_decided_as_kubectl_would_run_it(mode: Mode, row: Row) -> None:
    before = _fingerprint(mode.kubectl) if row.rule is not None else []
    proc = mode.run(row.line)
    said = (proc.stdout + proc.stderr).decode(errors="replace")
    # nothing of the agent's ran with what guardctl holds, in either outcome
    assert not (mode.work / "stolen").exists(), f"a program of the agent's ran: {said}"
    if row.rule is not None:
        assert proc.returncode in HELD, said
        assert row.rule in said, said
        assert _fingerprint(mode.kubectl) == before, f"the cluster changed: {said}"
    else:
        assert proc.returncode == row.status, said
        assert row.out in said, said
