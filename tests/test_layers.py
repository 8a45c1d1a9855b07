"""The pure core imports no terminal, process, keyring or click code (STYLE.md layout)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "guardctl"
CORE = [
    "model",
    "errors",
    "status",
    "parse",
    "shellword",
    "wrappers",
    "normalize",
    "resources",
    "flagtable",
    "bundled",
    "manifests",
    "rules",
    "policy",
    "ruletests",
    "explain",
    "detectors",
    "mask",
    "cast",
]
FORBIDDEN_MODULES = {"click", "rich", "pexpect", "keyring", "subprocess", "pty", "termios", "tty"}
FORBIDDEN_ATTRIBUTES = {("os", "environ"), ("sys", "stdin"), ("sys", "stdout"), ("sys", "stderr")}
# only cli.py may import click
CLICK_ALLOWED = {"cli"}


def _imports(tree: ast.AST) -> set[str]:
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


@pytest.mark.parametrize("name", [n for n in CORE if (PACKAGE / f"{n}.py").exists()])
def test_core_module_has_no_io_imports(name: str) -> None:
    tree = ast.parse((PACKAGE / f"{name}.py").read_text())
    assert not (_imports(tree) & FORBIDDEN_MODULES)
    assert not (_attributes(tree) & FORBIDDEN_ATTRIBUTES)


def test_only_cli_imports_click() -> None:
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.stem not in CLICK_ALLOWED and "click" in _imports(ast.parse(path.read_text()))
    ]
    assert offenders == []


def test_core_list_names_real_modules() -> None:
    # the layer check must not silently pass because a module was renamed
    present = {n for n in CORE if (PACKAGE / f"{n}.py").exists()}
    assert {"model", "parse", "normalize", "rules", "policy", "manifests"} <= present
