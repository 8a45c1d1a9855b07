"""Whole-process time of `guardctl get pods` against raw `kubectl get pods`, in one run,
and of `guardctl logs` of a large log (--logs-mb, default 10) against raw `kubectl logs`.

    python bench/bench_run.py [--runs 15] [--logs-mb 10]

Starts the embedded API server on 127.0.0.1, imports its admin credential into a
throwaway file keyring (as `guardctl creds import` does for a user), then times the
commands in turns and prints their medians and ratios to kubectl (goal <= 1.5). The first
guardctl run mints the agent's token and starts the fork server; later runs reuse the
token from the kernel keyring and run in the server's warm workers, as an agent's do (the
token's entry is dropped and the server stopped at the end). The same command run in its
own process (GUARDCTL_FORKSERVER=0), as a person at a terminal runs it, is timed beside.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time

from installed import bench_world, forget_token, fork_server_path

from guardctl.broker import forkcontrol


def _time(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:4]} failed: {proc.stderr.decode().strip()}")
    return elapsed


LOG_POD = "web-7d4b9c8f6d-x2k9p"


def _log_lines(megabytes: int) -> list[str]:
    """Application log lines, about `megabytes` MB of them (bench_mask's logs input)."""
    from bench_mask import INPUTS

    text = "".join(INPUTS["logs"][1](megabytes)) if megabytes else ""
    return text.splitlines()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--logs-mb", type=int, default=10, help="size of the log (0: none)")
    args = parser.parse_args()
    times: dict[str, list[float]] = {
        "raw": [], "warm": [], "alone": [], "raw logs": [], "logs": []}
    with bench_world("guardctl-bench-run-") as world:
        env, guardctl = world.env, world.guardctl
        raw = [world.kubectl, "--kubeconfig", str(world.admin), "get", "pods", "-n", "dev"]
        ours = [*guardctl, "get", "pods", "-n", "dev"]
        pod = ["logs", LOG_POD, "-n", "dev"]
        world.server.api.logs[("dev", LOG_POD)] = {"web": _log_lines(args.logs_mb)}
        alone = {**env, "GUARDCTL_FORKSERVER": "0"}
        fork_server = fork_server_path(world.python, env)
        _time(ours, env)  # mint and cache the token, start the fork server
        if not forkcontrol.wait_ready(fork_server):
            raise SystemExit("the fork server did not start; see " + fork_server + ".log")
        _time(ours, env)
        try:
            for _ in range(args.runs):
                times["raw"].append(_time(raw, env))
                times["warm"].append(_time(ours, env))
                times["alone"].append(_time(ours, alone))
                if args.logs_mb:
                    times["raw logs"].append(_time([*raw[:3], *pod], env))
                    times["logs"].append(_time([*guardctl, *pod], env))
        finally:
            forkcontrol.stop(fork_server)
            forget_token(env)
    medians = {name: statistics.median(values) for name, values in times.items() if values}
    print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"kubectl get pods                      median {medians['raw'] * 1000:7.1f} ms")
    for name, label in (("warm", "guardctl get pods"), ("alone", "  in its own process")):
        print(
            f"{label:37} median {medians[name] * 1000:7.1f} ms"
            f"  ratio {medians[name] / medians['raw']:.2f}"
        )
    if "logs" in medians:
        print(f"kubectl logs ({args.logs_mb} MB)" + " " * 20
              + f"median {medians['raw logs'] * 1000:7.1f} ms")
        print(f"{'guardctl logs':37} median {medians['logs'] * 1000:7.1f} ms"
              f"  ratio {medians['logs'] / medians['raw logs']:.2f} (goal: 1.5)")


if __name__ == "__main__":
    main()
