"""Run `python -m guardctl ARGS…` as a child process, bounded in output and time.

The MCP server and `guardctl demo` run guardctl this way so every command takes exactly
the command line's path (decide, record, approve, credentials, run, mask).
"""

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any, NamedTuple

from guardctl.status import exit_for_child

# what is kept of each output stream; the rest is read and dropped
MAX_OUTPUT_BYTES = 1024 * 1024
CHUNK = 65536
# after SIGTERM, the child's own grace for kubectl (runner.KILL_GRACE_SECONDS) plus a little
STOP_GRACE_SECONDS = 15.0
TRUNCATED = "\n[guardctl: output cut at {limit} bytes]\n"


class RunResult(NamedTuple):
    stdout: str
    stderr: str
    exit_code: int

    def to_json(self) -> dict[str, Any]:
        return {"stdout": self.stdout, "stderr": self.stderr, "exit_code": self.exit_code}


class _Capped:
    """Reads a pipe to its end in a thread, keeping the first `limit` bytes.

    Reading on past the limit keeps the child from blocking on a full pipe.
    """

    def __init__(
        self, pipe: IO[bytes], limit: int, seen: Callable[[bytes], None] | None = None
    ) -> None:
        self._pipe = pipe
        self._limit = limit
        self._seen = seen
        self._data = bytearray()
        self.truncated = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with self._pipe:
            # os.read: a buffered read would wait for CHUNK bytes, and `seen` must see them now
            while chunk := os.read(self._pipe.fileno(), CHUNK):
                if self._seen is not None:
                    self._seen(chunk)
                room = self._limit - len(self._data)
                self._data += chunk[: max(room, 0)]
                self.truncated = self.truncated or len(chunk) > room

    def text(self, wait: float) -> str:
        self._thread.join(wait)
        text = bytes(self._data).decode("utf-8", errors="replace")
        return text + TRUNCATED.format(limit=self._limit) if self.truncated else text


def _feed(pipe: IO[bytes], data: bytes) -> None:
    with pipe:
        try:
            pipe.write(data)
        except BrokenPipeError:
            pass  # guardctl did not read it (a deny, say); its exit code tells why


def run_guardctl(
    environ: Mapping[str, str],
    args: Sequence[str],
    stdin: str | None,
    timeout: float,
    *,
    limit: int = MAX_OUTPUT_BYTES,
    on_stderr: Callable[[bytes], None] | None = None,
) -> RunResult:
    """`python -m guardctl ARGS`, stdin fed from `stdin` (else empty), bounded in time.

    The child gets a session of its own: with no controlling terminal, an approval cannot
    prompt on a terminal someone else is drawing on (an agent's host, the demo's narration)
    and is queued for `guardctl approvals`; and a timeout stops the child with its kubectl.
    `on_stderr` sees each piece of the child's stderr as it comes (from another thread).
    """
    child = subprocess.Popen(
        [sys.executable, "-m", "guardctl", *args],
        env=dict(environ),
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert child.stdout is not None and child.stderr is not None
    out, err = _Capped(child.stdout, limit), _Capped(child.stderr, limit, on_stderr)
    if child.stdin is not None:
        data = (stdin or "").encode("utf-8")
        threading.Thread(target=_feed, args=(child.stdin, data), daemon=True).start()
    note = ""
    try:
        code = child.wait(timeout)
    except subprocess.TimeoutExpired:
        code = _stop(child)
        note = f"guardctl: stopped after {timeout:.0f} s\n"
    return RunResult(out.text(STOP_GRACE_SECONDS), err.text(STOP_GRACE_SECONDS) + note,
                     exit_for_child(code))


def _stop(child: subprocess.Popen[bytes]) -> int:
    """SIGTERM to the child's process group (guardctl forwards it to kubectl), then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            break
        try:
            return child.wait(STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            continue
    return child.wait(STOP_GRACE_SECONDS)
