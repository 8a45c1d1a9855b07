"""Many agents through one broker: N agent processes over TCP+TLS, each with its own token,
against raw kubectl at the same concurrency.

    python bench/bench_broker_load.py [--agents 50] [--rounds 1]

Starts the embedded API server on 127.0.0.1 and one broker (`guardctl broker serve --listen
127.0.0.1:0` with a throwaway self-signed certificate), makes a token for each agent (`guardctl
broker token create --agent NAME`), and starts N agent processes. In each round every agent
runs a mix of what an agent does — `get pods`, `describe pod`, `logs`, a `delete ns prod` that
guardctl denies (raw kubectl runs it as a server-side dry run, which also reaches the API) and
a `check` (raw: `kubectl version --client`) — one command after another, all agents at once,
timing each command from its start to its exit. Rounds through guardctl (the console script
as pip installs it, bench/installed.py) and of raw kubectl alternate, so both see the same
machine: each of `--rounds` is one of each, guardctl first in odd rounds and raw kubectl
first in even ones. Each agent's guardctl commands share a session
(`GUARDCTL_SESSION=load-NAME`). At 50 agents a round takes one to two minutes on two cores.

Afterwards `guardctl audit verify` must pass, every audit record must name its agent, and each
agent must have exactly one recorded invocation (`sessions --json`) per kubectl command it ran
through the broker, in its own session (a `check` runs nothing and records nothing). Prints
p50 and p99 per kind of command and the ratio of the p50s; exits 1 when a command exits other
than expected or a check of the records fails. Every process it starts ends with it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from installed import World, bench_world, forget_token, start_broker, stop_broker

from guardctl.devserver.tls import write_self_signed

POD = "web-7d4b9c8f6d-x2k9p"
# kind -> (guardctl's words, its expected exit, raw kubectl's words)
MIX: dict[str, tuple[list[str], int, list[str]]] = {
    "get": (["get", "pods", "-n", "dev"], 0, ["get", "pods", "-n", "dev"]),
    "describe": (["describe", "pod", POD, "-n", "dev"], 0, ["describe", "pod", POD, "-n", "dev"]),
    "logs": (["logs", POD, "-n", "dev"], 0, ["logs", POD, "-n", "dev"]),
    "delete (denied)": (["delete", "ns", "prod"], 11,
                        ["delete", "ns", "prod", "--dry-run=server"]),
    "check": (["check", "kubectl get pods -n dev -o wide"], 0, ["version", "--client"]),
}
RECORDED = frozenset(MIX) - {"check"}  # kinds that run kubectl, so are recorded
MODES = ("guardctl", "raw")
# bounds: one command, one round of all agents, an agent's start
COMMAND_SECONDS = 120.0
ROUND_SECONDS = 600.0
START_SECONDS = 60.0
# for the last records to be written after the last command exited
SETTLE_SECONDS = 30.0


# --------------------------------------------------------------------------- one agent


class Spec(NamedTuple):
    """What an agent process runs: its commands by mode, with their environments."""

    name: str
    guardctl: list[str]
    raw: list[str]
    guardctl_env: dict[str, str]
    raw_env: dict[str, str]
    order: list[str]  # kinds, in the order this agent runs them


def _run_mix(spec: Spec, mode: str) -> list[dict[str, Any]]:
    """Each command of the mix once, one after another: kind, seconds, exit, what it said."""
    results = []
    for kind in spec.order:
        words, expected, raw_words = MIX[kind]
        argv = [*spec.guardctl, *words] if mode == "guardctl" else [*spec.raw, *raw_words]
        env = spec.guardctl_env if mode == "guardctl" else spec.raw_env
        start = time.perf_counter()
        try:
            proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  timeout=COMMAND_SECONDS)
            code, said = proc.returncode, proc.stderr.decode(errors="replace").strip()
        except subprocess.TimeoutExpired:
            code, said = -1, f"no exit within {COMMAND_SECONDS:g} s"
        ok = code == (expected if mode == "guardctl" else 0)
        results.append({"kind": kind, "seconds": time.perf_counter() - start, "exit": code,
                        "said": "" if ok else said[-500:]})
    return results


def agent_main(spec: Spec) -> None:
    """An agent process: says it is ready, then runs the mix in each mode named on stdin and
    answers one JSON line each, until stdin ends."""
    print("ready", flush=True)
    for line in sys.stdin:
        print(json.dumps(_run_mix(spec, line.strip())), flush=True)


# --------------------------------------------------------------------------- the agents


class Agents:
    """The agent processes, driven a round at a time."""

    def __init__(self, specs: list[Spec]) -> None:
        self.procs: dict[str, subprocess.Popen[str]] = {}
        for spec in specs:
            self.procs[spec.name] = subprocess.Popen(
                [sys.executable, __file__, "--agent-spec", json.dumps(spec._asdict())],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )
        self._answers(START_SECONDS, "start")

    def _answers(self, seconds: float, what: str) -> dict[str, str]:
        """One line from each agent, within `seconds` in all."""
        waiting = {proc.stdout.fileno(): name for name, proc in self.procs.items()
                   if proc.stdout is not None}
        answers = {}
        deadline = time.monotonic() + seconds
        while waiting:
            left = deadline - time.monotonic()
            ready, _, _ = select.select(list(waiting), [], [], max(left, 0))
            if not ready:
                raise SystemExit(f"{len(waiting)} agents did not {what} within {seconds:g} s")
            for fd in ready:
                name = waiting.pop(fd)
                stdout = self.procs[name].stdout
                line = stdout.readline() if stdout is not None else ""
                if not line:
                    raise SystemExit(f"agent {name} ended during {what}")
                answers[name] = line
        return answers

    def round(self, mode: str) -> dict[str, list[dict[str, Any]]]:
        """Every agent runs the mix in `mode` at once; each one's results."""
        for proc in self.procs.values():
            assert proc.stdin is not None
            proc.stdin.write(mode + "\n")
            proc.stdin.flush()
        answers = self._answers(ROUND_SECONDS, f"finish a {mode} round")
        return {name: json.loads(line) for name, line in answers.items()}

    def stop(self) -> None:
        """End of stdin ends an agent; one that does not end is killed."""
        for proc in self.procs.values():
            if proc.stdin is not None:
                proc.stdin.close()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=COMMAND_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def running_agents(specs: list[Spec]) -> Iterator[Agents]:
    agents: Agents | None = None
    try:
        agents = Agents(specs)
        yield agents
    finally:
        if agents is not None:
            agents.stop()


# --------------------------------------------------------------------------- the broker


def _tokens(world: World, names: list[str]) -> dict[str, Path]:
    """A token file (0600) for each agent, from `guardctl broker token create`."""
    folder = world.root / "tokens"
    folder.mkdir(mode=0o700)
    files = {}
    for name in names:
        proc = subprocess.run(
            [*world.guardctl, "broker", "token", "create", "--agent", name, "--ttl", "1h"],
            env=world.env, capture_output=True, check=True,
        )
        path = folder / f"{name}.token"
        path.touch(mode=0o600)
        path.write_bytes(proc.stdout)
        files[name] = path
    return files


def _specs(world: World, url: str, ca: Path, token_files: Mapping[str, Path]) -> list[Spec]:
    kinds = list(MIX)
    specs = []
    for index, (name, token_file) in enumerate(token_files.items()):
        shift = index % len(kinds)  # agents start on different kinds
        through = {**world.env, "GUARDCTL_BROKER": url, "GUARDCTL_BROKER_CA": str(ca),
                   "GUARDCTL_BROKER_TOKEN_FILE": str(token_file),
                   "GUARDCTL_SESSION": f"load-{name}"}
        specs.append(Spec(name, world.guardctl,
                          [world.kubectl, "--kubeconfig", str(world.admin)], through, world.env,
                          kinds[shift:] + kinds[:shift]))
    return specs


# --------------------------------------------------------------------------- afterwards


def _check_exits(results: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
    """A line for each command that exited other than expected."""
    return [f"{name} {mode} {r['kind']}: exit {r['exit']}: {r['said']}"
            for name, mode, r in results if r["said"] or r["exit"] < 0]


def _listed(world: World, expected: int) -> list[dict[str, Any]]:
    """`sessions --json` once `expected` invocations are completed (a worker writes the
    completion after its client has the exit status), or as it is after SETTLE_SECONDS."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        proc = subprocess.run([*world.guardctl, "sessions", "--json"], env=world.env,
                              capture_output=True, text=True, check=True)
        rows = [json.loads(line) for line in proc.stdout.splitlines()]
        done = sum(row["status"] == "completed" for row in rows)
        if done >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)


def _check_records(world: World, ran: Mapping[str, int]) -> tuple[list[str], str]:
    """What is wrong with the audit log after the agents ran `ran` recorded commands each,
    and what was found."""
    problems = []
    rows = _listed(world, sum(ran.values()))
    proc = subprocess.run([*world.guardctl, "audit", "verify"], env=world.env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        problems.append(f"audit verify failed: {proc.stdout.strip()} {proc.stderr.strip()}")
    audit = Path(world.env["GUARDCTL_HOME"]) / "audit.jsonl"
    records = [json.loads(line) for line in audit.read_text().splitlines() if line.strip()]
    unnamed = [r for r in records if r.get("agent") not in ran]
    if unnamed:
        problems.append(f"{len(unnamed)} of {len(records)} audit records name no agent of "
                        f"this run (first: {unnamed[0]})")
    for name, count in ran.items():
        mine = [r for r in rows if r.get("agent") == name]
        elsewhere = [r for r in mine if r["session"] != f"load-{name}"
                     or r["status"] != "completed" or r["user"] != f"token:{name}"]
        if len(mine) != count or elsewhere:
            problems.append(f"{name} ran {count} recorded commands; `sessions` lists {len(mine)}"
                            f", {len(elsewhere)} not completed in its own session")
    if len(rows) != sum(ran.values()):
        problems.append(f"`sessions` lists {len(rows)} invocations for "
                        f"{sum(ran.values())} commands run")
    return problems, (f"audit: verified; {len(records)} records, each names its agent; "
                      f"{len(rows)} invocations listed = {sum(ran.values())} kubectl commands "
                      "run through the broker, each in its agent's session")


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def _report(times: Mapping[tuple[str, str], list[float]], walls: Mapping[str, list[float]],
            args: argparse.Namespace) -> None:
    print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; {args.agents} "
          f"agents over TCP+TLS through one broker, {args.rounds} rounds (guardctl and raw "
          "kubectl alternating)")
    for kind in [*MIX, "all"]:
        raw, ours = times[(kind, "raw")], times[(kind, "guardctl")]
        ratio = statistics.median(ours) / statistics.median(raw)
        print(f"{kind:16} kubectl p50 {statistics.median(raw) * 1000:7.1f} ms"
              f" p99 {_p99(raw) * 1000:7.1f}  |  guardctl p50"
              f" {statistics.median(ours) * 1000:7.1f} ms p99 {_p99(ours) * 1000:7.1f}"
              f"  |  p50 ratio {ratio:.2f}")
    per_round = len(MIX) * args.agents
    for mode in MODES:
        wall = statistics.median(walls[mode])
        print(f"a {mode} round: {per_round} commands in {wall:.1f} s (median), "
              f"{per_round / wall:.1f} commands/s")


Result = tuple[str, str, dict[str, Any]]  # agent, mode, one command's result


class Run(NamedTuple):
    results: list[Result]
    walls: dict[str, list[float]]  # mode -> seconds each of its rounds took
    setup: float  # seconds before the first round


def _run(world: World, agents: int, rounds: int, began: float) -> Run:
    """The broker, the tokens and the agents; `rounds` of each mode; all ended after."""
    key, cert = write_self_signed(world.root)
    broker, ready = start_broker(
        world.guardctl, world.env, world.root / "broker.log",
        "--listen", "127.0.0.1:0", "--tls-cert", str(cert), "--tls-key", str(key))
    walls: dict[str, list[float]] = {mode: [] for mode in MODES}
    results: list[Result] = []
    try:
        url = re.search(r"https://127\.0\.0\.1:\d+", ready)
        if url is None:
            raise SystemExit(f"the broker does not say where it listens: {ready}")
        names = [f"agent-{n:02d}" for n in range(agents)]
        specs = _specs(world, url.group(0), cert, _tokens(world, names))
        with running_agents(specs) as running:
            setup = time.perf_counter() - began
            for number in range(rounds):
                for mode in MODES if number % 2 == 0 else MODES[::-1]:
                    start = time.perf_counter()
                    answers = running.round(mode)
                    walls[mode].append(time.perf_counter() - start)
                    results += [(n, mode, r) for n, rs in answers.items() for r in rs]
    finally:
        stop_broker(broker)
        forget_token(world.env)
    return Run(results, walls, setup)


def _times(results: list[Result]) -> dict[tuple[str, str], list[float]]:
    """(kind, mode) -> seconds of each command; kind "all" for every kind together."""
    times: dict[tuple[str, str], list[float]] = {}
    for _, mode, result in results:
        for kind in (result["kind"], "all"):
            times.setdefault((kind, mode), []).append(result["seconds"])
    return times


def _recorded(results: list[Result], agents: int) -> dict[str, int]:
    """Each agent's count of commands the broker recorded."""
    ran = {f"agent-{n:02d}": 0 for n in range(agents)}
    for name, mode, result in results:
        if mode == "guardctl" and result["kind"] in RECORDED:
            ran[name] += 1
    return ran


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--agent-spec", help=argparse.SUPPRESS)  # an agent process's own
    args = parser.parse_args()
    if args.agent_spec:
        agent_main(Spec(**json.loads(args.agent_spec)))
        return
    if args.agents < 1 or args.rounds < 1:
        parser.error("--agents and --rounds must be at least 1")
    began = time.perf_counter()
    with bench_world("guardctl-bench-load-") as world:
        run = _run(world, args.agents, args.rounds, began)
        problems = _check_exits(run.results)
        found, summary = _check_records(world, _recorded(run.results, args.agents))
    _report(_times(run.results), run.walls, args)
    print(f"set-up (devserver, install, {args.agents} tokens, broker, agents) {run.setup:.1f} s;"
          f" whole run {time.perf_counter() - began:.1f} s")
    problems += found
    if problems:
        print("\n".join(["FAILED:", *problems[:20]]), file=sys.stderr)
        raise SystemExit(1)
    print(summary)


if __name__ == "__main__":
    main()
