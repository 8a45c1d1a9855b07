"""Many commands at once: N concurrent mixed commands through guardctl and through raw kubectl.

    python bench/bench_concurrency.py [--rounds 5] [--levels 8,32,64]

An agent (or several) runs many commands at the same moment. Each round starts N separate
processes at once — reads (`get pods`), deletes guardctl denies (`delete ns prod`; raw
kubectl runs it as a server-side dry run, which also reaches the API) and writes
(`annotate configmap`) — and times each from its start to its exit. Rounds of raw kubectl
and of guardctl alternate, so both see the same machine. guardctl's rounds share one
session (`GUARDCTL_SESSION`), as one agent's commands do, and after each of them
`guardctl audit verify` must pass: the chain and every cast intact. Prints p50 and p99 per
level and the ratio of the p50s (goal at N = 64: 1.2).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time

from installed import bench_world, forget_token, fork_server_path

from guardctl.broker import forkcontrol

CONFIGMAP = "bench-concurrency"
GOAL = 1.2


def _commands(n: int, index: int, guarded: bool) -> list[str]:
    """The command of the `index`-th process: half reads, a quarter deletes, a quarter writes."""
    kind = index % 4
    if kind in (0, 1):
        return ["get", "pods", "-n", "dev"]
    if kind == 2:
        return ["delete", "ns", "prod"] if guarded else ["delete", "ns", "prod", "--dry-run=server"]
    return ["annotate", "configmap", CONFIGMAP, "-n", "dev", f"k{n}-{index}=v", "--overwrite"]


def _round(prefix: list[str], n: int, env: dict[str, str], guarded: bool) -> list[float]:
    """Start n processes at once; each one's seconds from start to exit."""
    started = []
    for index in range(n):
        words = _commands(n, index, guarded)
        start = time.perf_counter()
        proc = subprocess.Popen([*prefix, *words], env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        started.append((start, words, proc))
    ends: dict[int, tuple[float, int]] = {}
    while len(ends) < n:  # each one's end as it comes (small stderr: no pipe fills)
        pid, status = os.wait()
        ends[pid] = (time.perf_counter(), os.waitstatus_to_exitcode(status))
    times = []
    for start, words, proc in started:
        end, proc.returncode = ends[proc.pid]
        err = proc.stderr.read() if proc.stderr is not None else b""
        expected = 11 if guarded and words[0] == "delete" else 0
        if proc.returncode != expected:
            raise SystemExit(f"{words} exited {proc.returncode}: {err.decode().strip()}")
        times.append(end - start)
    return times


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def _verify(guardctl: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run([*guardctl, "audit", "verify"], env=env, capture_output=True)
    if proc.returncode != 0:
        raise SystemExit("audit verify failed after a round:\n" + proc.stdout.decode()
                         + proc.stderr.decode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--levels", default="8,32,64")
    args = parser.parse_args()
    levels = [int(n) for n in args.levels.split(",")]
    times: dict[tuple[int, str], list[float]] = {}
    with bench_world("guardctl-bench-concurrency-") as world:
        env, guardctl = world.env, world.guardctl
        raw = [world.kubectl, "--kubeconfig", str(world.admin)]
        subprocess.run([*raw, "create", "configmap", CONFIGMAP, "-n", "dev"], check=True,
                       capture_output=True)
        fork_server = fork_server_path(world.python, env)
        subprocess.run([*guardctl, "get", "pods", "-n", "dev"], env=env, check=True,
                       capture_output=True)  # mint the token, start the fork server
        forkcontrol.wait_ready(fork_server)
        try:
            for n in levels:
                session = {**env, "GUARDCTL_SESSION": f"bench-{n}"}
                for _ in range(args.rounds):
                    times.setdefault((n, "raw"), []).extend(_round(raw, n, env, False))
                    times.setdefault((n, "guardctl"), []).extend(
                        _round(guardctl, n, session, True))
                    _verify(guardctl, env)
        finally:
            forkcontrol.stop(fork_server)
            forget_token(env)
    print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; "
          f"{args.rounds} rounds per level, audit verified after each guardctl round")
    for n in levels:
        raw_t, ours = times[(n, "raw")], times[(n, "guardctl")]
        ratio = statistics.median(ours) / statistics.median(raw_t)
        goal = f" (goal: {GOAL})" if n == max(levels) else ""
        print(f"N={n:3}  kubectl p50 {statistics.median(raw_t) * 1000:7.1f} ms"
              f" p99 {_p99(raw_t) * 1000:7.1f}  |  guardctl p50"
              f" {statistics.median(ours) * 1000:7.1f} ms p99 {_p99(ours) * 1000:7.1f}"
              f"  |  p50 ratio {ratio:.2f}{goal}")


if __name__ == "__main__":
    main()
