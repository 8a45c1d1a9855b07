"""The package's shape: a pure core, layers that import only downwards, no import circles.

Layers, lowest first (STYLE.md): base vocabulary; the pure core (firewall, masking, the cast
format), which imports no terminal, process, keyring or click code; the adapters that touch
the world (environment, files, keyring, processes, terminals); orchestration (the path of a
check or a kubectl run, agent integrations, diagnosis); the entry points (command line, fork
server and broker, demo). Lazy imports inside functions count: they run too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "guardctl"

# module name (dotted, under guardctl) or package prefix -> layer; the longest match wins
LAYERS = {
    "": 0,  # guardctl/__init__
    "model": 0,
    "errors": 0,
    "status": 0,
    "commands": 0,
    "bundled": 0,
    "runtime": 0,
    "atomic": 0,
    "locks": 0,
    "accounts": 0,
    "signals": 0,
    "stampcache": 0,
    "fieldpaths": 0,
    "data": 0,
    "firewall": 1,
    "masking": 1,
    "recording.cast": 1,
    "env": 2,
    "config": 2,
    "recording": 2,
    "running": 2,
    "approvals": 2,
    "kubectl_help": 2,
    "app": 3,
    "running.invoke": 3,
    "agents": 3,
    "doctor": 3,
    # sinks that ship records off the machine; only the broker, doctor and cli use them
    "shipping": 3,
    "devserver": 3,
    "cli": 4,
    "main": 4,
    "routing": 4,
    "__main__": 4,
    "broker": 4,
    "demo": 4,
    "uninstall": 4,
}
CORE_LAYER = 1
FORBIDDEN_IN_CORE = {"click", "rich", "pexpect", "keyring", "subprocess", "pty", "termios", "tty"}
FORBIDDEN_ATTRIBUTES = {("os", "environ"), ("sys", "stdin"), ("sys", "stdout"), ("sys", "stderr")}
# only cli.py may import click
CLICK_ALLOWED = {"cli"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def layer(module: str) -> int:
    """The layer of a module name under guardctl (`firewall.parse`, `cli`, `` for the root)."""
    candidates = [k for k in LAYERS if k == module or (k and module.startswith(k + "."))]
    if not candidates:
        raise KeyError(f"guardctl.{module} has no layer in tests/test_layers.py")
    return LAYERS[max(candidates, key=len)]


def _type_checking_blocks(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside `if TYPE_CHECKING:` blocks (never run)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            skipped |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skipped


def guardctl_imports(module: str) -> set[str]:
    """The guardctl modules `module` imports (at top level or inside functions)."""
    tree = ast.parse(MODULES[module].read_text())
    skipped = _type_checking_blocks(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from guardctl.x import y`: y itself when it is a module, else x
            names = [
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}"[9:] in MODULES
                else node.module
                for a in node.names
            ]
        else:
            continue
        for name in names:
            if name == "guardctl" or name.startswith("guardctl."):
                target = name[len("guardctl.") :] if "." in name else ""
                if target in MODULES and target != module:
                    found.add(target)
    return found


GRAPH = {module: guardctl_imports(module) for module in MODULES}


def _third_party(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def _attributes(tree: ast.AST) -> set[tuple[str, str]]:
    return {
        (node.value.id, node.attr)
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
    }


CORE = sorted(m for m in MODULES if layer(m) <= CORE_LAYER and m)


@pytest.mark.parametrize("name", CORE)
def test_core_module_has_no_io_imports(name: str) -> None:
    tree = ast.parse(MODULES[name].read_text())
    assert not (_third_party(tree) & FORBIDDEN_IN_CORE)
    assert not (_attributes(tree) & FORBIDDEN_ATTRIBUTES)


def test_only_cli_imports_click() -> None:
    offenders = [
        name for name, path in MODULES.items()
        if name not in CLICK_ALLOWED and "click" in _third_party(ast.parse(path.read_text()))
    ]
    assert offenders == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_the_layers(module: str) -> None:
    upward = sorted(t for t in GRAPH[module] if layer(t) > layer(module))
    assert upward == [], f"guardctl.{module} (layer {layer(module)}) imports a higher layer"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_circles() -> None:
    assert _cycles(GRAPH) == []


def test_the_cycle_finder_finds_cycles() -> None:
    # the circle check must be able to fail
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_module_has_a_layer_and_the_core_is_real() -> None:
    for module in MODULES:
        layer(module)  # KeyError names a module nobody placed
    assert {"firewall.parse", "firewall.normalize", "firewall.policy", "masking.mask"} <= set(CORE)
