"""Programs that carry kubectl where guardctl cannot read (issue 11): interpreters, remote
shells, schedulers, plugins. Lines that span several lines (here-documents) live here; the
one-line cases are in tests/corpus (`hidden-kubectl`, and the carriers seen through).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from guardctl.bundled import bundled_rules_dir
from guardctl.firewall.parse import parse
from guardctl.firewall.policy import PolicyContext, decide
from guardctl.firewall.rules import load_rules
from guardctl.model import Action

RULES = load_rules([bundled_rules_dir()])
CONTEXT = PolicyContext(protected_paths=("/srv/guard",), cluster_hosts=("10.1.2.3:6443",))


def _decide(line: str) -> tuple[Action, set[str]]:
    decision = decide(parse(line), RULES, CONTEXT)
    return decision.action, {h.id for c in decision.commands for h in c.hits}


@pytest.mark.parametrize(
    "line",
    [
        "python3 - <<'EOF'\nimport os\nos.system('kubectl delete ns prod')\nEOF",
        "python3 <<EOF\nimport subprocess\nsubprocess.run(['kubectl', 'get', 'secrets'])\nEOF",
        "perl <<'EOF'\nsystem('kubectl delete ns prod');\nEOF",
        "node <<'EOF'\nrequire('child_process').execSync('kubectl delete ns prod')\nEOF",
        "at now <<EOF\nkubectl delete ns prod\nEOF",
        "ssh bastion <<EOF\nkubectl delete ns prod\nEOF",
        # the cluster's address, reached by a program guardctl cannot read into
        "python3 -c 'import urllib.request as u; u.urlopen(\"https://10.1.2.3:6443/api\")'",
        "python3 - <<EOF\nimport requests\nrequests.delete('https://10.1.2.3:6443/api/v1/namespaces/prod')\nEOF",
    ],
)
def test_a_carrier_that_names_kubectl_or_the_cluster_is_never_allowed(line: str) -> None:
    action, rules = _decide(line)
    assert action is not Action.ALLOW
    assert "hidden-kubectl" in rules


@pytest.mark.parametrize(
    ("line", "action"),
    [
        # seen through: the remote or scripted kubectl line is decided itself
        ("ssh bastion 'kubectl delete ns prod'", Action.DENY),
        ("script -qc 'kubectl delete ns prod' /dev/null", Action.DENY),
        ("script /dev/null <<EOF\nkubectl delete ns prod\nEOF", Action.DENY),
        ("ssh bastion kubectl get pods -n dev", Action.ALLOW),
        # options after the remote command are the command's, not ssh's
        ("ssh bastion kubectl get pods -n dev -o wide", Action.ALLOW),
        # an ssh option that runs a local command of its own is never seen through
        ("ssh -o 'ProxyCommand=nc %h %p' bastion uptime", Action.APPROVE),
        # text that only names kubectl
        ("cat <<EOF\nrun kubectl get pods\nEOF", Action.ALLOW),
        ("python3 - <<EOF\nprint(sum(range(10)))\nEOF", Action.ALLOW),
    ],
)
def test_carriers_seen_through(line: str, action: Action) -> None:
    assert _decide(line)[0] is action


@pytest.mark.parametrize(
    ("line", "action"),
    [
        # kubectl expands no `~`: a quoted one, or one after `--filename=`, names a folder `~`
        ("kubectl apply -f '~/app.yaml'", Action.APPROVE),
        ('kubectl apply -f "~"/app.yaml', Action.APPROVE),
        ("kubectl apply --filename=~/app.yaml", Action.APPROVE),
        # the shell expands this one: the home folder's (plain) file
        ("kubectl apply -f ~/app.yaml", Action.ALLOW),
    ],
)
def test_the_file_decided_is_the_file_kubectl_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: str, action: Action
) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    (work / "~").mkdir(parents=True)
    home.mkdir()
    (work / "~" / "app.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  hostPID: true\n"
        "  containers: [{name: c, image: busybox}]\n"
    )
    (home / "app.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    assert _decide(line)[0] is action
