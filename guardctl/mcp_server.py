"""guardctl as an MCP server over stdio: the tools `kubectl` and `check` for MCP agents.

Both tools take the command line's path. `check` decides a line with the same Checker as
`guardctl check --json` and returns that object. `kubectl` runs `python -m guardctl kubectl
ARGS` as a child, so deciding, recording, approval, short-lived credentials and masking
are exactly the CLI's, and returns its stdout, stderr and exit code. A deny is an ordinary
result (exit code 11, the rule and reason on stderr), not a protocol error: the agent is
meant to read it and change course.

    python -m guardctl.mcp_server      # or `guardctl mcp`
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

from guardctl import __version__
from guardctl.env import Environment
from guardctl.errors import GuardError
from guardctl.status import ExitStatus, exit_for_child

# what one tool call returns of each output stream; the rest is read and dropped
MAX_OUTPUT_BYTES = 1024 * 1024
CHUNK = 65536
# a run may first wait for a human (GUARDCTL_APPROVAL_TIMEOUT), then for kubectl itself
DEFAULT_APPROVAL_TIMEOUT = 300.0
RUN_SECONDS_AFTER_APPROVAL = 300.0
# after SIGTERM, the child's own grace for kubectl (runner.KILL_GRACE_SECONDS) plus a little
STOP_GRACE_SECONDS = 15.0
TRUNCATED = "\n[guardctl mcp: output cut at {limit} bytes]\n"

KUBECTL_DESCRIPTION = (
    "Run kubectl through guardctl's policy gate. Pass kubectl's arguments as a list, without "
    "the word 'kubectl' (e.g. ['get', 'pods', '-n', 'dev']); `stdin` feeds a manifest to "
    "'-f -'. Returns stdout, stderr and exit_code. Exit 11: denied by policy, nothing ran "
    "(stderr says which rule and why). Exit 12: a human declined or did not answer. Exit 13: "
    "guardctl could not run it safely. Secret values in the output are masked."
)
CHECK_DESCRIPTION = (
    "Ask guardctl's policy about a shell line without running it. Returns decision "
    "(allow, approve or deny), reason, and each kubectl command with the rules that fired."
)


@dataclass(frozen=True)
class RunResult:
    stdout: str
    stderr: str
    exit_code: int

    def to_json(self) -> dict[str, Any]:
        return {"stdout": self.stdout, "stderr": self.stderr, "exit_code": self.exit_code}


class _Capped:
    """Reads a pipe to its end in a thread, keeping the first `limit` bytes.

    Reading on past the limit keeps the child from blocking on a full pipe.
    """

    def __init__(self, pipe: IO[bytes], limit: int) -> None:
        self._pipe = pipe
        self._limit = limit
        self._data = bytearray()
        self.truncated = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with self._pipe:
            while chunk := self._pipe.read(CHUNK):
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


def run_timeout(environ: Mapping[str, str]) -> float:
    """Seconds one `kubectl` tool call may take: the approval wait plus time to run."""
    try:
        approval = float(environ.get("GUARDCTL_APPROVAL_TIMEOUT", DEFAULT_APPROVAL_TIMEOUT))
    except ValueError:
        approval = DEFAULT_APPROVAL_TIMEOUT
    return max(approval, 0.0) + RUN_SECONDS_AFTER_APPROVAL


def run_guarded(
    environ: Mapping[str, str],
    args: Sequence[str],
    stdin: str | None,
    timeout: float,
    *,
    limit: int = MAX_OUTPUT_BYTES,
) -> RunResult:
    """`python -m guardctl kubectl ARGS`, stdin fed from `stdin` (else empty), bounded in time.

    The child gets a session of its own: no controlling terminal, so an approval cannot
    prompt on the terminal the agent's host may be drawing on and goes to `guardctl
    approvals` instead; and a timeout can stop the child together with its kubectl.
    """
    child = subprocess.Popen(
        [sys.executable, "-m", "guardctl", "kubectl", *args],
        env=dict(environ),
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert child.stdout is not None and child.stderr is not None
    out, err = _Capped(child.stdout, limit), _Capped(child.stderr, limit)
    if child.stdin is not None:
        data = (stdin or "").encode("utf-8")
        threading.Thread(target=_feed, args=(child.stdin, data), daemon=True).start()
    note = ""
    try:
        code = child.wait(timeout)
    except subprocess.TimeoutExpired:
        code = _stop(child)
        note = f"guardctl mcp: stopped after {timeout:.0f} s\n"
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


def session_environ(env: Environment) -> dict[str, str]:
    """The children's environment: one recorded session for the whole MCP connection."""
    from guardctl import recorder

    environ = dict(env.environ)
    environ.setdefault("GUARDCTL_SESSION", recorder.new_session_id())
    return environ


def build_server(env: Environment) -> MCPServer[Any]:
    """The MCP server with both tools; rules are loaded per `check`, as the CLI does."""
    from guardctl.app import Checker

    environ = session_environ(env)
    server = MCPServer(name="guardctl", version=__version__, log_level="WARNING")

    @server.tool(
        name="check",
        description=CHECK_DESCRIPTION,
        annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False),
    )
    def check(line: str) -> dict[str, Any]:
        try:
            return Checker.load(env).check(line).to_json()
        except GuardError as exc:  # unreadable rules: say so, never a verdict
            raise ToolError(f"guardctl: {exc}") from exc

    @server.tool(name="kubectl", description=KUBECTL_DESCRIPTION)
    def kubectl(args: list[str], stdin: str | None = None) -> dict[str, Any]:
        return run_guarded(environ, args, stdin, run_timeout(environ)).to_json()

    return server


def serve(env: Environment) -> int:
    """Serve MCP on this process's stdin and stdout until the client hangs up."""
    build_server(env).run("stdio")
    return ExitStatus.OK


if __name__ == "__main__":
    raise SystemExit(serve(Environment()))
