"""Whole-process time of `guardctl get pods` against raw `kubectl get pods`, in one run.

    python bench/bench_run.py [--runs 15]

Starts the embedded API server on 127.0.0.1, imports its admin credential into a
throwaway file keyring (as `guardctl creds import` does for a user), then times both
commands alternately and prints their medians and the ratio (goal <= 1.5). The first
guardctl run mints the agent's token; later runs reuse it from the kernel keyring, as in
real use (its entry is dropped at the end).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from installed import installed_guardctl, installed_like

from guardctl.config import load_config
from guardctl.creds import kernel_cache
from guardctl.devserver import DevServer
from guardctl.env import Environment


def _time(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:4]} failed: {proc.stderr.decode().strip()}")
    return elapsed


def _forget_token(environ: dict[str, str]) -> None:
    """Drop the token the runs cached in the kernel keyring (it would stay until its timeout)."""
    env = Environment(environ=environ)
    config = load_config(env.config_path)
    cache = kernel_cache(env, config) if config is not None else None
    if cache is not None:
        cache.drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise SystemExit("kubectl is not installed")
    root = Path(tempfile.mkdtemp(prefix="guardctl-bench-run-"))
    try:
        with DevServer() as server:
            admin = server.write_kubeconfig(root / "admin.kubeconfig")
            env = {
                **installed_like(os.environ),
                "GUARDCTL_HOME": str(root / "home"),
                "GUARDCTL_CONFIG": str(root / "config.yaml"),
                "XDG_DATA_HOME": str(root / "data"),
                "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
            }
            guardctl, _python = installed_guardctl(root)
            subprocess.run(
                [
                    *guardctl,
                    "creds",
                    "import",
                    "--kubeconfig",
                    str(admin),
                    "--service-account",
                    "guardctl/guardctl-agent",
                ],
                env=env,
                check=True,
                capture_output=True,
            )
            raw = [kubectl, "--kubeconfig", str(admin), "get", "pods", "-n", "dev"]
            ours = [*guardctl, "get", "pods", "-n", "dev"]
            _time(ours, env)  # mint and cache the token, warm bytecode
            raw_times, our_times = [], []
            for _ in range(args.runs):
                raw_times.append(_time(raw, env))
                our_times.append(_time(ours, env))
            _forget_token(env)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    kubectl_median, guardctl_median = statistics.median(raw_times), statistics.median(our_times)
    print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"kubectl get pods          median {kubectl_median * 1000:7.1f} ms")
    print(
        f"guardctl get pods         median {guardctl_median * 1000:7.1f} ms"
        f"  ratio {guardctl_median / kubectl_median:.2f}"
    )


if __name__ == "__main__":
    main()
