"""Through the broker: whole-process times against raw kubectl, in one run.

    python bench/bench_broker.py [--runs 15]

Starts the embedded API server on 127.0.0.1 and a broker (`guardctl broker serve`) with the
devserver's admin credential imported, then times, in turns within each round (so that load
drifts hit every command alike):

  kubectl get pods               against  guardctl get pods through the broker
                                          (and through the same-user fork server)
                                          and kubectl with guardctl's GOGC setting
  kubectl version --client       against  guardctl check LINE through the broker,
                                          for a plain line and a heredoc line
                                          (and the plain line through the fork server)

guardctl is the command of a clean venv (bench/installed.py), as pip installs it. The
client runs as the broker's own account here (the work is the same for an agent's account;
`runuser` would add its own start-up to every run). guardctl runs kubectl with `GOGC=200`
(guardctl.running.kubectl_env), which makes kubectl itself faster: the last line compares
the broker with kubectl run the same way, guardctl's own cost alone. Each round takes the
commands in an order shifted by one from the last. Prints medians and ratios; no
assertions: read the numbers, compare runs on the same machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time

from installed import bench_world, fork_server_path, start_broker, stop_broker

from guardctl.broker import forkcontrol
from guardctl.running.kubectl_env import GOGC

PLAIN = "kubectl get pods -n dev -o wide"
HEREDOC = "kubectl apply -f - <<EOF\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\nEOF"


def _time(argv: list[str], env: dict[str, str], ok: tuple[int, ...] = (0,)) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if proc.returncode not in ok:
        raise SystemExit(f"{argv[:4]} failed ({proc.returncode}): {proc.stderr.decode().strip()}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    times: dict[str, list[float]] = {}
    with bench_world("guardctl-bench-broker-") as world:
        kubectl, admin, env, guardctl = world.kubectl, world.admin, world.env, world.guardctl
        (world.root / "sock").mkdir(mode=0o755)
        socket = world.root / "sock" / "broker.sock"
        broker, _ = start_broker(guardctl, env, world.root / "broker.log", "--socket",
                                 str(socket))
        through = {**env, "GUARDCTL_BROKER": str(socket)}
        fork_server = fork_server_path(world.python, env)
        commands = {
            "kubectl get pods": ([kubectl, "--kubeconfig", str(admin), "get", "pods", "-n",
                                  "dev"], env, (0,)),
            "same kubectl, GOGC=200": ([kubectl, "--kubeconfig", str(admin), "get", "pods",
                                        "-n", "dev"], {**env, "GOGC": GOGC}, (0,)),
            "get pods, broker": ([*guardctl, "get", "pods", "-n", "dev"], through, (0,)),
            "get pods, fork server": ([*guardctl, "get", "pods", "-n", "dev"], env, (0,)),
            "kubectl version --client": ([kubectl, "version", "--client"], env, (0,)),
            "check, broker": ([*guardctl, "check", PLAIN], through, (0,)),
            "check heredoc, broker": ([*guardctl, "check", HEREDOC], through, (0, 10)),
            "check, fork server": ([*guardctl, "check", PLAIN], env, (0,)),
        }
        try:
            for argv, environ, ok in commands.values():  # warm: token, caches, servers
                _time(argv, environ, ok)
            if not forkcontrol.wait_ready(fork_server):
                raise SystemExit("the fork server did not start")
            times = {name: [] for name in commands}
            names = list(commands)
            for round_number in range(args.runs):
                # each round starts one command later: no command always follows the same
                # one (right after a guardctl run, its broker is still warming a new worker)
                shift = round_number % len(names)
                for name in names[shift:] + names[:shift]:
                    argv, environ, ok = commands[name]
                    times[name].append(_time(argv, environ, ok))
        finally:
            stop_broker(broker)
            forkcontrol.stop(fork_server)
    medians = {name: statistics.median(values) * 1000 for name, values in times.items()}
    print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores, {args.runs} rounds")
    base = "kubectl get pods"
    for name, value in medians.items():
        if name.startswith("kubectl"):
            base = name
            print(f"{name:28} median {value:7.1f} ms")
        else:
            print(f"  {name:26} median {value:7.1f} ms  ratio {value / medians[base]:.2f}")
    tuned = medians["get pods, broker"] / medians["same kubectl, GOGC=200"]
    print(f"get pods, broker against kubectl with the same GOGC: ratio {tuned:.2f}"
          " (guardctl's own cost alone)")


if __name__ == "__main__":
    main()
