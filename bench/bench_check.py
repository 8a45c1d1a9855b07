"""Speed of `guardctl check` against raw kubectl, measured in one run.

    python bench/bench_check.py [--runs 21] [--lines 3000] [--batches 5]

Prints the median wall time of a whole `guardctl check` process for a simple line and
for a line that needs the full shell parser, beside the median of `kubectl version
--client` in the same run, and their ratios (goal: simple line <= 1.5x kubectl); then the
throughput of `guardctl check --batch`, the median of whole runs (goal: >= 3,000 lines/s),
with the default policy and with 1,000 more rules of the shapes a team writes, in turns
(goal: <= 1.3x the default policy). The mix repeats the corpus's lines, as an agent's work
repeats its commands, and a batch decides a line or command it met before at once (when
deciding it read no file): its distinct lines, each once, are timed in the same turns, for
the cost of a line guardctl has not met.
Runs go through the fork server, as an agent's do (its own, stopped at the end); the
simple line is also timed in its own process (GUARDCTL_FORKSERVER=0). No assertions:
read the numbers, compare runs on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from installed import fork_server_path, installed_guardctl, installed_like

from guardctl.broker import forkcontrol

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "corpus"
SIMPLE = "kubectl get pods -n dev -o wide"
SHELL = "sudo bash -c 'kubectl get secret db -o yaml' | grep -v token && echo done"
# rules a team adds to the default policy, for the scaling measurement
EXTRA_RULES = 1000


def _median_seconds(argv: list[str], runs: int, env: dict[str, str]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False
        )
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _corpus_lines(count: int) -> list[str]:
    lines = [
        line.strip()
        for path in sorted(CORPUS.glob("*.cases"))
        for line in path.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return (lines * (count // len(lines) + 1))[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--lines", type=int, default=3000)
    parser.add_argument("--batches", type=int, default=5, help="check --batch runs (median)")
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="guardctl-bench-")
    guardctl, python = installed_guardctl(Path(home))
    env = {
        **installed_like(os.environ),
        "GUARDCTL_HOME": home,
        "XDG_CACHE_HOME": home,
        "XDG_RUNTIME_DIR": str(Path(home) / "run"),
    }
    print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    try:
        _measure(args, guardctl, python, env)
    finally:
        forkcontrol.stop_all(env["XDG_RUNTIME_DIR"])
        shutil.rmtree(home, ignore_errors=True)


def _measure(
    args: argparse.Namespace, guardctl: list[str], python: list[str], env: dict[str, str]
) -> None:
    kubectl = shutil.which("kubectl")
    # warm caches (bytecode, page cache) and start the fork server before measuring
    _median_seconds([*guardctl, "check", SIMPLE], 2, env)
    if not forkcontrol.wait_ready(fork_server_path(python, env)):
        raise SystemExit("the fork server did not start")
    results = (
        {
            "kubectl version --client": _median_seconds(
                [kubectl, "version", "--client"], args.runs, env
            )
        }
        if kubectl
        else {}
    )
    results["python -c pass (same venv)"] = _median_seconds(
        [*python, "-c", "pass"], args.runs, env
    )
    results["guardctl check (simple line)"] = _median_seconds(
        [*guardctl, "check", SIMPLE], args.runs, env
    )
    results["guardctl check (shell line)"] = _median_seconds(
        [*guardctl, "check", SHELL], args.runs, env
    )
    results["  simple line, in its own process"] = _median_seconds(
        [*guardctl, "check", SIMPLE], args.runs, {**env, "GUARDCTL_FORKSERVER": "0"}
    )
    base = results.get("kubectl version --client")
    for name, seconds in results.items():
        ratio = f"  ratio {seconds / base:.2f}" if base and not name.startswith("kubectl") else ""
        print(f"{name:32} median {seconds * 1000:7.1f} ms{ratio}")

    lines = _corpus_lines(args.lines)
    distinct = list(dict.fromkeys(lines))
    team = Path(env["GUARDCTL_HOME"]) / "team-rules.yaml"
    team.write_text(_team_rules(EXTRA_RULES))
    batches = {
        "default policy": (lines, env),
        f"+{EXTRA_RULES} rules": (lines, {**env, "GUARDCTL_RULES": str(team)}),
        "distinct lines, default policy": (distinct, env),
    }
    times: dict[str, list[float]] = {name: [] for name in batches}
    for _ in range(args.batches):  # in turns: load drifts hit all alike
        for name, (batch, batch_env) in batches.items():
            times[name].append(_batch_seconds(guardctl, batch, batch_env))
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, elapsed in medians.items():
        count = len(batches[name][0])
        print(
            f"check --batch, {name}: {count} lines, median of {args.batches} runs"
            f" {elapsed:.2f} s = {count / elapsed:,.0f} lines/s"
        )
    default, extra, _ = medians.values()
    print(f"+{EXTRA_RULES} rules against the default policy: ratio {extra / default:.2f}")


def _batch_seconds(guardctl: list[str], lines: list[str], env: dict[str, str]) -> float:
    payload = "".join(json.dumps({"id": i, "line": line}) + "\n" for i, line in enumerate(lines))
    start = time.perf_counter()
    proc = subprocess.run(
        [*guardctl, "check", "--batch"], input=payload, capture_output=True, text=True, env=env,
        cwd=CORPUS, check=True,
    )
    elapsed = time.perf_counter() - start
    assert len(proc.stdout.splitlines()) == len(lines), "every line gets one answer"
    return elapsed


def _team_rules(count: int) -> str:
    """`count` rules of the shapes a team writes: a verb on a resource in its namespaces,
    a verb with a flag, a resource in a namespace, a project's name anywhere."""
    verbs = ["get", "delete", "apply", "patch", "scale", "exec", "logs", "describe", "label"]
    kinds = ["pods", "deployments", "secrets", "configmaps", "services", "nodes", "jobs"]
    shapes = [
        lambda i: f'{{verbs: [{verbs[i % 9]}], resources: [{kinds[i % 7]}], '
                  f'namespaces: ["team-{i}-*"]}}',
        lambda i: f'{{verbs: [{verbs[i % 9]}], flags: ["selector=app=svc-{i}"]}}',
        lambda i: f'{{resources: [{kinds[i % 7]}], namespaces: ["ns-{i}"]}}',
        lambda i: f'{{mentions: ["*project-{i}-secret*"]}}',
    ]
    rules = "".join(
        f"  - id: team-{i}\n    action: {('deny', 'approve')[i % 2]}\n    reason: Team rule."
        f"\n    match: {shapes[i % 4](i)}\n"
        for i in range(count)
    )
    return f"version: 1\nrules:\n{rules}"


if __name__ == "__main__":
    main()
