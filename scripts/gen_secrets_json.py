#!/usr/bin/env python3
"""Build guardctl/data/secrets.json from rules/secrets.yaml, the detectors' source.

Usage: python scripts/gen_secrets_json.py

Every guardctl run that starts kubectl loads the detectors; reading them from JSON spares it
PyYAML's import and parse (tens of milliseconds). rules/secrets.yaml stays the file people
edit and review; a test fails when the JSON no longer matches it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from compact_json import dump

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "rules" / "secrets.yaml"
OUT = ROOT / "guardctl" / "data" / "secrets.json"


def build(text: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def main() -> int:
    OUT.write_text(dump(build(SOURCE.read_text("utf-8"))), encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
