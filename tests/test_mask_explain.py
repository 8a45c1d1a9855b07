"""`guardctl mask --explain`: which rule masked what, why look-alikes were kept, and never a
masked value in the report."""

from __future__ import annotations

import os
import subprocess
import sys

from guardctl.masking.detectors import default_detectors
from guardctl.masking.explain import explain, report
from guardctl.masking.mask import Masker, masker_for

SECRET = "G#iFXC0NZ!cFlwvTWxaLYUoQ"
TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
SAMPLE = (
    f"DB_PASSWORD={SECRET}\n"
    "password=REDACTED\n"
    f"token: {TOKEN}\n"
    "checksum/secret: 2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881\n"
)


def test_masked_findings_name_their_rule_and_kept_ones_their_reason() -> None:
    findings = explain(SAMPLE, Masker(default_detectors()), default_detectors())
    masked = {(f.line, f.rule) for f in findings if f.masked}
    assert (1, "generic-secret-assignment") in masked
    assert any(line == 3 for line, _ in masked)
    kept = {f.line: f for f in findings if not f.masked}
    assert kept[2].reason.startswith("a placeholder") and kept[2].shown == "REDACTED"
    assert "not_after" in kept[4].reason and kept[4].shown.startswith("2d7116")


def test_structure_masks_are_explained() -> None:
    text = "apiVersion: v1\ndata:\n  password: aHVudGVyMg==\nkind: Secret\n"
    findings = explain(text, masker_for(["get", "secret", "-o", "yaml"], default_detectors()),
                       default_detectors())
    [finding] = [f for f in findings if f.masked]
    assert (finding.line, finding.rule) == (3, "secret-data")
    assert "Secret's data" in finding.reason


def test_the_report_never_shows_a_masked_value() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "guardctl", "mask", "--explain"],
        input=SAMPLE.encode(), capture_output=True, timeout=60,
        env={**os.environ, "GUARDCTL_FORKSERVER": "0"},
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode()
    assert SECRET not in out and TOKEN[4:] not in out
    assert "REDACTED" in out and out.rstrip().endswith("look-alikes kept")
    assert report([]).startswith("nothing masked")
