"""What the installed kubectl says about itself: its commands and flags, from its own help.

`scripts/gen_kubectl_flags.py` builds guardctl's flag table (`data/kubectl_flags.json`)
from this; `guardctl doctor` compares the installed kubectl with that table, so that a
newer kubectl's new flag or command is named before an agent meets it (guardctl asks a
human for any line whose flag it does not know, but a user should hear why).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

# Commands kubectl has but does not list in `kubectl --help`.
UNLISTED = ("alpha", "help", "options")
TIMEOUT = 20  # seconds for one kubectl run
MAX_PATHS = 400  # the tree has about 110 paths; stop a runaway walk
PARALLEL = 8  # `kubectl PATH --help` runs at once

_FLAG = re.compile(r"^\s{2,}(?:-(?P<short>\S), )?--(?P<name>[A-Za-z0-9][\w-]*)=(?P<default>.*):$")
_COMMAND = re.compile(r"^  (?P<name>[a-z][a-z0-9-]*)\s{2,}\S")


@dataclass
class Help:
    """What one `kubectl PATH --help` says about its command."""

    children: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    flags: list[dict[str, str]] = field(default_factory=list)


def run(kubectl: str, args: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [kubectl, *args],
        env=dict(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def sections(text: str) -> dict[str, list[str]]:
    """Split help text into its `Heading:` sections (lines until the next heading)."""
    out: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        if line and not line[0].isspace() and line.endswith(":"):
            current = line[:-1]
            out[current] = []
        elif current:
            out[current].append(line)
    return out


def parse_flags(lines: list[str]) -> list[dict[str, str]]:
    """Flags as help lists them; kubectl shows a boolean as `--flag=false`, others take a value."""
    flags = []
    for line in lines:
        m = _FLAG.match(line)
        if m:
            takes = "bool" if m["default"] in ("true", "false") else "value"
            flags.append({"name": m["name"], "short": m["short"] or "", "takes": takes})
    return flags


def parse_help(text: str, root: bool) -> Help:
    parts = sections(text)
    help_ = Help(flags=parse_flags(parts.get("Options", [])))
    if root:
        # the root lists its commands under several headings ("Basic Commands (Beginner)", ...)
        listing = [ln for name, lines in parts.items() if "Commands" in name for ln in lines]
    else:
        listing = parts.get("Available Commands", [])
    help_.children = [m["name"] for ln in listing if (m := _COMMAND.match(ln))]
    alias_lines = [ln.strip() for ln in parts.get("Aliases", []) if ln.strip()]
    if alias_lines:
        help_.aliases = [a.strip() for a in alias_lines[0].split(",") if a.strip()]
    return help_


def walk(kubectl: str, env: Mapping[str, str]) -> dict[str, Help]:
    """Every command path (words joined by a space, "" for the root) with its help, one
    level of the tree at a time, PARALLEL commands at once. RuntimeError when one fails."""
    root = parse_help(run(kubectl, ["--help"], env).stdout, root=True)
    if not root.children:
        raise RuntimeError("`kubectl --help` lists no commands")
    root.children = sorted(set(root.children) | set(UNLISTED))
    tree = {"": root}
    level = list(root.children)
    with ThreadPoolExecutor(PARALLEL) as pool:
        while level and len(tree) < MAX_PATHS:
            level = level[: MAX_PATHS - len(tree)]
            results = pool.map(lambda path: run(kubectl, [*path.split(), "--help"], env), level)
            following: list[str] = []
            for path, result in zip(level, results, strict=True):
                if result.returncode != 0:
                    raise RuntimeError(f"`kubectl {path} --help` failed: {result.stderr.strip()}")
                tree[path] = parse_help(result.stdout, root=False)
                following += [f"{path} {child}" for child in tree[path].children]
            level = following
    return tree


def global_flags(kubectl: str, env: Mapping[str, str]) -> list[dict[str, str]]:
    return parse_flags(run(kubectl, ["options"], env).stdout.splitlines())
