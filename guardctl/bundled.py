"""Where the bundled policy files are: `guardctl/bundled_rules/` in an installed wheel,
the repository's `rules/` in a checkout (plain or `pip install -e`)."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def bundled_rules_dir() -> Path:
    installed = _PACKAGE / "bundled_rules"
    return installed if installed.is_dir() else _PACKAGE.parent / "rules"


def completion_script(shell: str) -> str:
    """The completion script for `shell`: `guardctl/bundled_completions/` in an installed
    wheel, the repository's `completions/` in a checkout."""
    installed = _PACKAGE / "bundled_completions"
    folder = installed if installed.is_dir() else _PACKAGE.parent / "completions"
    return (folder / f"guardctl.{shell}").read_text(encoding="utf-8")


def data_text(name: str) -> str:
    """A data file shipped in `guardctl/data/` (read by path: importlib.resources costs
    ~20 ms of import time on every invocation, and the path is the same in wheels and
    checkouts)."""
    return (_PACKAGE / "data" / name).read_text(encoding="utf-8")
