"""One approver answering one queued request, as the console's keys do (`queue.answer`).

Usage: approval_answerer.py REQUEST_ID approve|decline USER. Imports guardctl, prints
`ready`, and answers when a line arrives on stdin, so that a test can start two of these
and let them answer at the same moment. Prints `answered: …` (exit 0) or `refused: …`
(exit 1).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from guardctl.approvals.queue import AnswerError, answer
from guardctl.env import Environment
from guardctl.recording.audit import Approver


def main(argv: list[str]) -> int:
    request_id, verdict, user = argv
    state_dir: Path = Environment().state_dir
    print("ready", flush=True)
    sys.stdin.readline()
    approver = Approver(user=user, tty=None, at=time.time())
    try:
        done = answer(state_dir, request_id, approved=verdict == "approve", approver=approver,
                      reason=f"{verdict}d by {user}" if verdict == "decline" else "")
    except AnswerError as exc:
        print(f"refused: {exc}", flush=True)
        return 1
    print(f"answered: {done}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
