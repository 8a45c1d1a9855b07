"""bench/bench_broker_load.py at a small scale (4 agents, one round), so that it cannot rot:
it runs end to end, prints a line per kind of command, and its checks of the audit log
pass."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_broker_load.py"


def test_the_load_benchmark_runs_at_a_small_scale() -> None:
    if shutil.which("kubectl") is None or shutil.which("openssl") is None:
        pytest.skip("needs kubectl and openssl (the broker's certificate)")
    proc = subprocess.run([sys.executable, str(BENCH), "--agents", "4", "--rounds", "1"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    kinds = ["get", "describe", "logs", "delete (denied)", "check", "all"]
    for kind in kinds:
        assert any(line.startswith(f"{kind} ") and "p50 ratio" in line for line in lines), kind
    assert ("audit: verified; 32 records, each names its agent; 16 invocations listed = 16"
            in proc.stdout)
