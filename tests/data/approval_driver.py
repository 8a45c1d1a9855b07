"""Calls request_approval for one shell line decided by the real policy, prints the outcome.

Usage: approval_driver.py LINE [CLUSTER]. Exit 0 approved, 12 declined or timed out, 130 on
Ctrl-C, like `guardctl` itself. The diff callable returns a fixed text so the prompt's diff
section can be checked without a cluster.
"""

from __future__ import annotations

import sys

from guardctl.app import Checker
from guardctl.approvals.flow import outcome_message, request_approval
from guardctl.env import Environment
from guardctl.status import ExitStatus

DIFF = "-  replicas: 1\n+  replicas: 3"


def main(argv: list[str]) -> int:
    env = Environment()
    line = argv[0]
    decision = Checker.load(env).check(line)
    try:
        outcome = request_approval(
            env, decision, line, cluster=argv[1] if len(argv) > 1 else "", diff=lambda: DIFF
        )
    except KeyboardInterrupt:
        print("outcome: interrupted", flush=True)
        return ExitStatus.INTERRUPTED
    who = outcome.approver.user if outcome.approver else "-"
    print(
        f"outcome: approved={outcome.approved} how={outcome.how} approver={who}"
        f" reason={outcome.reason}",
        flush=True,
    )
    print(outcome_message(outcome), file=sys.stderr, flush=True)
    return ExitStatus.OK if outcome.approved else ExitStatus.DECLINED


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
