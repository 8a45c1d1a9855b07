#!/usr/bin/env python3
"""Build guardctl/data/kubectl_flags.json from the real kubectl's own help.

Usage: python scripts/gen_kubectl_flags.py [KUBECTL] [OUT]

Walks the command tree (`kubectl --help`, then `kubectl PATH --help` for every listed
sub-command), reads each command's aliases and flags, and `kubectl options` for the
global flags. kubectl's help shows a boolean as `--flag=false|true`; every other flag
takes a value. Help cannot show pflag's "NoOptDefVal" (flags such as `--dry-run` that
may be given bare), so each value flag is probed once with `kubectl PATH --flag` and no
value: only a flag that needs its value makes kubectl say "flag needs an argument".
The probes run with an empty HOME and KUBECONFIG in a temporary directory, so nothing
reaches a real cluster or changes a real kubeconfig.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from compact_json import dump

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "guardctl" / "data" / "kubectl_flags.json"

# Commands kubectl has but does not list in `kubectl --help`.
UNLISTED = ("alpha", "help", "options")
# cobra adds -h/--help to every command; kubectl's help template never prints it.
COBRA_FLAGS = ({"name": "help", "short": "h", "takes": "bool"},)
# What a bare optional flag means (pflag NoOptDefVal). Help cannot show these values;
# they are kubectl source facts (cmdutil.AddDryRunFlag, AddValidateFlags, delete --cascade).
BARE_VALUES = {"dry-run": "unchanged", "validate": "strict", "cascade": "background"}

TIMEOUT = 20  # seconds for one kubectl run
MAX_PATHS = 400  # the tree has about 110 paths; stop a runaway walk

_FLAG = re.compile(r"^\s{2,}(?:-(?P<short>\S), )?--(?P<name>[A-Za-z0-9][\w-]*)=(?P<default>.*):$")
_COMMAND = re.compile(r"^  (?P<name>[a-z][a-z0-9-]*)\s{2,}\S")


@dataclass
class Help:
    """What one `kubectl PATH --help` says about its command."""

    children: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    flags: list[dict[str, str]] = field(default_factory=list)


def run(kubectl: str, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [kubectl, *args],
        env=env,
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


def walk(kubectl: str, env: dict[str, str]) -> dict[str, Help]:
    """Every command path (words joined by a space) with its help, breadth first."""
    root = parse_help(run(kubectl, ["--help"], env).stdout, root=True)
    root.children = sorted(set(root.children) | set(UNLISTED))
    tree = {"": root}
    queue = [child for child in root.children]
    while queue and len(tree) < MAX_PATHS:
        path = queue.pop(0)
        result = run(kubectl, [*path.split(), "--help"], env)
        if result.returncode != 0:
            raise SystemExit(f"kubectl {path} --help failed: {result.stderr.strip()}")
        help_ = parse_help(result.stdout, root=False)
        tree[path] = help_
        queue.extend(f"{path} {child}" for child in help_.children)
    return tree


def needs_value(kubectl: str, path: str, name: str, env: dict[str, str]) -> bool:
    """True when kubectl refuses `--name` without a value (no NoOptDefVal)."""
    try:
        result = run(kubectl, [*path.split(), f"--{name}"], env)
    except subprocess.TimeoutExpired:
        # a command that started (e.g. a proxy) accepted the bare flag
        return False
    return "flag needs an argument" in result.stderr


def classify(kubectl: str, path: str, flag: dict[str, str], env: dict[str, str]) -> dict[str, str]:
    if flag["takes"] == "value" and not needs_value(kubectl, path, flag["name"], env):
        bare = BARE_VALUES.get(flag["name"])
        if bare is None:
            raise SystemExit(f"--{flag['name']} of '{path}' may be bare; add it to BARE_VALUES")
        return {**flag, "takes": "optional", "bare": bare}
    return flag


def global_flags(kubectl: str, env: dict[str, str]) -> list[dict[str, str]]:
    lines = run(kubectl, ["options"], env).stdout.splitlines()
    flags = [classify(kubectl, "", f, env) for f in parse_flags(lines)]
    return flags + [dict(f) for f in COBRA_FLAGS]


def merge(tree: dict[str, Help], kubectl: str, env: dict[str, str]) -> list[dict[str, object]]:
    """One entry per distinct flag spec, with the sorted paths that accept it."""
    specs: dict[str, dict[str, str]] = {}
    paths: dict[str, list[str]] = {}
    for path, help_ in tree.items():
        for flag in help_.flags:
            spec = classify(kubectl, path, flag, env)
            key = json.dumps(spec, sort_keys=True)
            specs[key] = spec
            paths.setdefault(key, []).append(path)
    keys = sorted(specs, key=lambda k: (specs[k]["name"], specs[k]["short"], specs[k]["takes"]))
    return [{**specs[k], "paths": sorted(paths[k])} for k in keys]


def client_version(kubectl: str, env: dict[str, str]) -> str:
    out = json.loads(run(kubectl, ["version", "--client", "-o", "json"], env).stdout)
    return str(out["clientVersion"]["gitVersion"])


def build(kubectl: str) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as home:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home,
               "KUBECONFIG": str(Path(home) / "kubeconfig"), "LANG": "C"}
        tree = walk(kubectl, env)
        return {
            "kubectl": client_version(kubectl, env),
            "paths": sorted(p for p in tree if p),
            "aliases": {p: [a for a in h.aliases if a != p.split()[-1]]
                        for p, h in sorted(tree.items()) if len(h.aliases) > 1},
            "global": global_flags(kubectl, env),
            "flags": merge(tree, kubectl, env),
        }


def main(argv: list[str]) -> int:
    kubectl = argv[1] if len(argv) > 1 else "/usr/bin/kubectl"
    out = Path(argv[2]) if len(argv) > 2 else OUT
    out.write_text(dump(build(kubectl)), encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
