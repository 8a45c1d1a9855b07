#!/usr/bin/env python3
"""Build guardctl/data/resources.json from the discovery documents guardctl ships.

Usage: python scripts/gen_resources.py [DISCOVERY_JSON] [OUT]

The input is a list of APIResourceList documents (`kubectl get --raw /api/v1`,
`/apis/GROUP/VERSION`) in the order the API server lists its groups: core first, then
each group's preferred version first. That order is kubectl's preference when a name
is in several groups (`events` is the core Event, not events.k8s.io), so the table
keeps it: one entry per (group, resource), in first-seen order, with the first version
seen as the preferred one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from compact_json import dump

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "guardctl" / "data" / "kubernetes-discovery.json"
OUT = ROOT / "guardctl" / "data" / "resources.json"


def split_group_version(group_version: str) -> tuple[str, str]:
    """`apps/v1` -> ("apps", "v1"); the core group's `v1` -> ("", "v1")."""
    group, _, version = group_version.rpartition("/")
    return group, version


def add_resource(table: dict[tuple[str, str], dict[str, Any]], group: str, version: str,
                 res: dict[str, Any]) -> None:
    entry = table.setdefault((group, res["name"]), {
        "plural": res["name"],
        "singular": res.get("singularName", ""),
        "short": list(res.get("shortNames", [])),
        "kind": res["kind"],
        "group": group,
        "version": version,
        "versions": [],
        "namespaced": bool(res["namespaced"]),
        "subresources": [],
        "categories": list(res.get("categories", [])),
    })
    if version not in entry["versions"]:
        entry["versions"].append(version)


def add_subresource(table: dict[tuple[str, str], dict[str, Any]], group: str,
                    res: dict[str, Any]) -> None:
    parent, sub = res["name"].split("/", 1)
    entry = table.get((group, parent))
    if entry is not None and sub not in entry["subresources"]:
        entry["subresources"].append(sub)


def build(documents: list[dict[str, Any]]) -> dict[str, object]:
    table: dict[tuple[str, str], dict[str, Any]] = {}
    for doc in documents:
        group, version = split_group_version(doc["groupVersion"])
        for res in doc["resources"]:
            if "/" not in res["name"]:
                add_resource(table, group, version, res)
        for res in doc["resources"]:
            if "/" in res["name"]:
                add_subresource(table, group, res)
    categories: dict[str, list[str]] = {}
    for entry in table.values():
        qualified = f"{entry['plural']}.{entry['group']}" if entry["group"] else entry["plural"]
        for category in entry.pop("categories"):
            categories.setdefault(category, []).append(qualified)
        entry["subresources"].sort()
    return {"resources": list(table.values()), "categories": categories}


def main(argv: list[str]) -> int:
    source = Path(argv[1]) if len(argv) > 1 else SOURCE
    out = Path(argv[2]) if len(argv) > 2 else OUT
    documents = json.loads(source.read_text(encoding="utf-8"))
    out.write_text(dump(build(documents)), encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
