"""kubectl plugins the user lists in the config (`plugins: {NAME: PATH}`) are decided like
kubectl's own commands, by their name, and run with the agent's short-lived credential.
Unlisted plugins stay unknown commands; kubectl's global flags given to a plugin are still
decided (a plugin built on kubectl's libraries honours `--kubeconfig` and `--token`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_setup import agent_environ

from guardctl.broker import forkcontrol
from guardctl.bundled import bundled_rules_dir
from guardctl.config import load_contexts
from guardctl.devserver import DevServer
from guardctl.errors import UsageError
from guardctl.firewall.parse import parse
from guardctl.firewall.policy import context_of, decide
from guardctl.firewall.rules import load_rules, parse_rules
from guardctl.model import Action

KUBECTL = shutil.which("kubectl")
RULES = load_rules([bundled_rules_dir()])
PLUGINS = context_of(plugins=frozenset({"tree", "who-am-i"}))
PLUGIN_SCRIPT = """#!/bin/sh
echo "plugin args: $*"
kubectl get ns -o name
"""


@pytest.mark.parametrize(
    ("line", "action"),
    [
        ("kubectl tree deployment web -n dev", Action.ALLOW),
        ("kubectl tree deployment web --color --depth=3 -x", Action.ALLOW),
        ("kubectl who-am-i", Action.ALLOW),
        # kubectl's global flags reach the plugin, and are decided
        ("kubectl tree deployment web --kubeconfig /tmp/admin", Action.DENY),
        ("kubectl tree deployment web --token=abc", Action.DENY),
        ("kubectl tree deployment web --context=other", Action.DENY),
        # kubectl looks for a plugin only in the first word
        ("kubectl -n dev tree deployment web", Action.APPROVE),
        ("kubectl neat get pod x", Action.APPROVE),  # not listed
        ("kubectl $PLUGIN deployment web", Action.APPROVE),
    ],
)
def test_listed_plugins_are_decided_as_commands(line: str, action: Action) -> None:
    assert decide(parse(line), RULES, PLUGINS).action is action


def test_rules_name_a_plugin_as_a_verb() -> None:
    own = parse_rules(
        "rules:\n"
        "  - id: no-tree-in-prod\n    action: deny\n    reason: not there\n"
        "    match: {verbs: [tree], namespaces: [prod]}\n",
        "team.yaml",
    )
    rules = RULES._replace(rules=(*RULES.rules, *own))
    assert decide(parse("kubectl tree deploy web -n prod"), rules, PLUGINS).action is Action.DENY
    assert decide(parse("kubectl tree deploy web -n dev"), rules, PLUGINS).action is Action.ALLOW


@pytest.mark.parametrize(
    ("plugins", "message"),
    [
        ("plugins: [tree]\n", "must map plugin names"),
        ("plugins: {tree: bin/kubectl-tree}\n", "needs the absolute path"),
        ("plugins: {get: /usr/bin/x}\n", "is a kubectl command of its own"),
        ("plugins: {'a b': /usr/bin/x}\n", "is not one word"),
    ],
)
def test_a_bad_plugin_list_names_the_problem(tmp_path: Path, plugins: str, message: str) -> None:
    from test_config import GOOD

    path = tmp_path / "config.yaml"
    path.write_text(GOOD + plugins)
    with pytest.raises(UsageError, match=message):
        load_contexts(path)


# ------------------------------------------------------------------ end to end

@pytest.fixture(scope="module")
def plugin_env(
    devserver: DevServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    if KUBECTL is None:
        pytest.skip("kubectl is not installed")
    root = tmp_path_factory.mktemp("plugins")
    admin = devserver.write_kubeconfig(root / "admin.kubeconfig", namespace="dev")
    plugin = root / "kubectl-who_am_i"
    plugin.write_text(PLUGIN_SCRIPT)
    plugin.chmod(0o755)
    env = agent_environ(root)
    proc = guardctl(env, "creds", "import", "--kubeconfig", str(admin),
                    "--service-account", "guardctl/guardctl-agent")
    assert proc.returncode == 0, proc.stderr
    with open(root / "config.yaml", "a") as config:
        config.write(f"plugins:\n  who-am-i: {plugin}\n  gone: {root / 'kubectl-gone'}\n")
    yield env
    forkcontrol.stop_all(Path(env["XDG_RUNTIME_DIR"]))


def guardctl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "guardctl", *args], env=env, capture_output=True, timeout=60
    )


def test_a_listed_plugin_runs_with_the_agents_credential(
    plugin_env: dict[str, str], devserver: DevServer
) -> None:
    devserver.clear_requests()
    proc = guardctl(plugin_env, "who-am-i", "--depth", "2", "-x")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(b"plugin args: --depth 2 -x\n")
    assert b"namespace/dev" in proc.stdout
    assert "system:serviceaccount:guardctl:guardctl-agent" in {u for _, _, u in devserver.requests}


def test_plugins_that_are_not_listed_or_not_there_do_not_run(plugin_env: dict[str, str]) -> None:
    unlisted = guardctl(plugin_env, "neat", "get", "pod", "x")
    assert unlisted.returncode == 1 and b'unknown command "neat"' in unlisted.stderr
    missing = guardctl(plugin_env, "gone")
    assert missing.returncode == 13 and b"fix `plugins:`" in missing.stderr
    flagged = guardctl(plugin_env, "who-am-i", "--kubeconfig", "/tmp/x")
    assert flagged.returncode == 11 and b"swap-credentials-flag" in flagged.stderr


def test_through_a_broker_only_the_brokers_plugins_run(devserver: DevServer) -> None:
    if os.geteuid() != 0 or shutil.which("runuser") is None or KUBECTL is None:
        pytest.skip("needs root, runuser and kubectl to run a broker for another account")
    import tempfile

    from broker_setup import running_broker

    with tempfile.TemporaryDirectory() as folder:
        admin = devserver.write_kubeconfig(Path(folder) / "admin.kubeconfig")
        with running_broker(admin) as broker:
            plugin = broker.state / "kubectl-who_am_i"
            plugin.write_text(PLUGIN_SCRIPT)
            plugin.chmod(0o755)
            config = Path(broker.environ["GUARDCTL_CONFIG"])
            config.write_text(config.read_text() + f"plugins:\n  who-am-i: {plugin}\n")
            proc = broker.agent("who-am-i", "--flag")
            assert proc.returncode == 0, proc.stderr
            assert b"plugin args: --flag" in proc.stdout and b"namespace/dev" in proc.stdout
            refused = broker.agent("neat", "get", "pod")
            assert refused.returncode != 0 and b"plugin args" not in refused.stdout
