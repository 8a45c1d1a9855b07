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
import subprocess
import sys
import tempfile
from pathlib import Path

from compact_json import dump

from guardctl.kubectl_help import Help, global_flags, run, walk

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "guardctl" / "data" / "kubectl_flags.json"

# cobra adds -h/--help to every command; kubectl's help template never prints it.
COBRA_FLAGS = ({"name": "help", "short": "h", "takes": "bool"},)
# What a bare optional flag means (pflag NoOptDefVal). Help cannot show these values;
# they are kubectl source facts (cmdutil.AddDryRunFlag, AddValidateFlags, delete --cascade).
BARE_VALUES = {"dry-run": "unchanged", "validate": "strict", "cascade": "background"}


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


def all_global_flags(kubectl: str, env: dict[str, str]) -> list[dict[str, str]]:
    flags = [classify(kubectl, "", f, env) for f in global_flags(kubectl, env)]
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
            "global": all_global_flags(kubectl, env),
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
