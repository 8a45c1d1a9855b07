from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import pytest

from guardctl import kubectl_help
from guardctl.firewall.flagtable import ROOT, flag_table

REPO = Path(__file__).resolve().parent.parent
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"


@pytest.mark.parametrize(
    ("path", "flag", "name", "takes"),
    [
        ("logs", "p", "previous", "bool"),
        ("patch", "p", "patch", "value"),
        ("proxy", "p", "port", "value"),
        ("get", "n", "namespace", "value"),  # global
        ("get", "A", "all-namespaces", "bool"),
        ("get", "o", "output", "value"),
        ("apply", "k", "kustomize", "value"),
        ("apply", "R", "recursive", "bool"),
        ("version", "s", "server", "value"),
        ("exec", "i", "stdin", "bool"),
        ("delete", "i", "interactive", "bool"),
        ("run", "l", "labels", "value"),
        ("get", "l", "selector", "value"),
        ("get", "h", "help", "bool"),
    ],
)
def test_shorthands_per_command(path: str, flag: str, name: str, takes: str) -> None:
    spec = flag_table().shorthand(path, flag)
    assert spec is not None
    assert (spec.name, spec.takes) == (name, takes)


@pytest.mark.parametrize(
    ("path", "name", "takes", "bare"),
    [
        ("delete", "dry-run", "optional", "unchanged"),
        ("create namespace", "dry-run", "optional", "unchanged"),
        ("delete", "cascade", "optional", "background"),
        ("apply", "validate", "optional", "strict"),
        ("get", "raw", "value", ""),
        ("delete", "wait", "bool", "true"),
        ("get", "namespace", "value", ""),
        ("rollout restart", "context", "value", ""),
    ],
)
def test_long_flags(path: str, name: str, takes: str, bare: str) -> None:
    spec = flag_table().flag(path, name)
    assert spec is not None
    assert (spec.takes, spec.bare) == (takes, bare)


@pytest.mark.parametrize(("path", "name"), [("get", "dry-run"), ("logs", "patch"), ("", "output")])
def test_flags_a_command_does_not_have(path: str, name: str) -> None:
    assert flag_table().flag(path, name) is None


@pytest.mark.parametrize(
    ("path", "word", "child"),
    [
        (ROOT, "get", "get"),
        ("create", "ns", "create namespace"),
        ("create", "secret", "create secret"),
        ("create secret", "generic", "create secret generic"),
        ("create", "svc", "create service"),
        ("create service", "nodeport", "create service nodeport"),
        ("top", "po", "top pod"),
        ("top", "nodes", "top node"),
        ("config", "use", "config use-context"),
        ("rollout", "restart", "rollout restart"),
        ("apply", "view-last-applied", "apply view-last-applied"),
        ("auth", "can-i", "auth can-i"),
        ("certificate", "approve", "certificate approve"),
        ("cluster-info", "dump", "cluster-info dump"),
        (ROOT, "alpha", "alpha"),
        (ROOT, "foo", None),
        ("get", "pods", None),
        ("create", "pod", None),
    ],
)
def test_command_tree(path: str, word: str, child: str | None) -> None:
    assert flag_table().child(path, word) == child


def test_tree_shape() -> None:
    table = flag_table()
    assert table.has_children("rollout") and table.has_children("create secret")
    assert not table.has_children("get")
    assert table.version.startswith("v1.32")
    for sub in ("set image", "set env", "set resources", "set selector", "set serviceaccount",
                "set subject", "top pod", "top node", "auth whoami", "auth reconcile",
                "config view", "create token", "plugin list", "rollout undo"):
        assert sub in table.paths


def _generator(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    spec = importlib.util.spec_from_file_location("gen_kubectl_flags",
                                                  REPO / "scripts" / "gen_kubectl_flags.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gen_kubectl_flags", module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not os.access(KUBECTL, os.X_OK), reason="kubectl is not installed")
@pytest.mark.parametrize("path", ["get", "logs", "create secret generic", "rollout restart"])
def test_table_matches_installed_kubectl(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sample of the table against the installed kubectl's help (the full run takes ~1 min:
    `python scripts/gen_kubectl_flags.py`)."""
    gen = _generator(monkeypatch)
    with tempfile.TemporaryDirectory() as home:
        env = {"PATH": os.environ.get("PATH", ""), "HOME": home,
               "KUBECONFIG": str(Path(home) / "kubeconfig")}
        version = gen.client_version(KUBECTL, env)
        if version != flag_table().version:
            pytest.skip(f"installed kubectl is {version}, the table was built from "
                        f"{flag_table().version}")
        helped = kubectl_help.parse_help(
            kubectl_help.run(KUBECTL, [*path.split(), "--help"], env).stdout, False
        )
    table = flag_table()
    for flag in helped.flags:
        spec = table.flag(path, flag["name"])
        assert spec is not None, flag
        assert spec.short == flag["short"]
        assert (spec.takes == "bool") == (flag["takes"] == "bool")
    assert set(table.long.get(path, {})) == {f["name"] for f in helped.flags}
