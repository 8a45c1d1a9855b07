"""guardctl as an MCP server over stdio: the tools `kubectl` and `check` for MCP agents.

Both tools take the command line's path. `check` decides a line with the same Checker as
`guardctl check --json` and returns that object. `kubectl` runs `python -m guardctl kubectl
ARGS` as a child (guardctl.running.child), so deciding, recording, approval, short-lived
credentials and masking are exactly the CLI's, and returns its stdout, stderr and exit
code. A deny is an ordinary result (exit code 11, the rule and reason on stderr), not a
protocol error: the agent is meant to read it and change course.

A `kubectl` call may wait minutes for a human (`guardctl approvals`). So that a client with
a short request timeout does not give up, the tool sends MCP progress notifications while
the call runs — at once when the child says it waits for a human, then every
PROGRESS_SECONDS — saying what it waits for (clients that asked for progress get them;
others, nothing).

    python -m guardctl.agents.mcp      # or `guardctl mcp`
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping
from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

from guardctl import __version__
from guardctl.env import Environment
from guardctl.errors import GuardError
from guardctl.running.child import RunResult, run_guardctl
from guardctl.status import ExitStatus

# a run may first wait for a human (GUARDCTL_APPROVAL_TIMEOUT), then for kubectl itself
RUN_SECONDS_AFTER_APPROVAL = 300.0
# how often a running `kubectl` call tells the client it is still at work
PROGRESS_SECONDS = 5.0
# how often it looks whether the child has started waiting for a human
LOOK_SECONDS = 0.5
# what guardctl says on stderr when a request waits for a human (approvals.flow)
WAITING = b"guardctl: waiting up to "

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


def run_timeout(environ: Mapping[str, str]) -> float:
    """Seconds one `kubectl` tool call may take: the approval wait plus time to run."""
    from guardctl.approvals import queue

    try:
        approval = queue.approval_timeout(environ)
    except GuardError:
        approval = queue.DEFAULT_TIMEOUT  # the child refuses the bad setting at once
    return approval + RUN_SECONDS_AFTER_APPROVAL


def session_environ(env: Environment) -> dict[str, str]:
    """The children's environment: one recorded session for the whole MCP connection."""
    from guardctl.recording import recorder

    environ = dict(env.environ)
    environ.setdefault("GUARDCTL_SESSION", recorder.new_session_id())
    return environ


def build_server(env: Environment) -> MCPServer[Any]:
    """The MCP server with both tools; rules are loaded per `check`, as the CLI does."""
    from guardctl.app import Checker
    from guardctl.runtime import broker_path

    environ = session_environ(env)
    # with a broker, both tools are its clients: its rules decide, nothing runs here
    brokered = broker_path(environ) is not None
    server = MCPServer(name="guardctl", version=__version__, log_level="WARNING")

    @server.tool(
        name="check",
        description=CHECK_DESCRIPTION,
        annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False),
    )
    def check(line: str) -> dict[str, Any]:
        if brokered:
            return _check_through_broker(environ, line)
        try:
            return Checker.load(env).check(line).to_json()
        except GuardError as exc:  # unreadable rules: say so, never a verdict
            raise ToolError(f"guardctl: {exc}") from exc

    @server.tool(name="kubectl", description=KUBECTL_DESCRIPTION)
    async def kubectl(args: list[str], ctx: Context, stdin: str | None = None) -> dict[str, Any]:
        result = await _run_reporting(environ, ["kubectl", *args], stdin, ctx)
        return result.to_json()

    return server


class _Said:
    """The line the child's guardctl wrote when it began to wait for a human, if it did."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._text = b""
        self.waiting: str | None = None

    def feed(self, chunk: bytes) -> None:
        with self._lock:
            if self.waiting is not None:
                return
            self._text = (self._text + chunk)[-4096:]
            start = self._text.find(WAITING)
            end = self._text.find(b"\n", start)
            if start >= 0 and end >= 0:
                line = self._text[start:end].decode("utf-8", "replace")
                self.waiting = line.removeprefix("guardctl: ")


async def _run_reporting(
    environ: Mapping[str, str], args: list[str], stdin: str | None, ctx: Context
) -> RunResult:
    """`run_guardctl` in a worker thread, with progress notifications while it runs."""
    timeout = run_timeout(environ)
    said = _Said()
    started = time.monotonic()

    async def report() -> None:
        last, told_waiting = started, False
        # bounded: the run itself ends within `timeout` (then this is cancelled)
        for _ in range(math.ceil(timeout / LOOK_SECONDS) + 10):
            await anyio.sleep(LOOK_SECONDS)
            now = time.monotonic()
            begun = said.waiting is not None and not told_waiting
            if begun or now - last >= PROGRESS_SECONDS:
                last, told_waiting = now, said.waiting is not None
                message = (f"{said.waiting}; waited {now - started:.0f} s"
                           if said.waiting else f"kubectl running for {now - started:.0f} s")
                await ctx.report_progress(round(now - started, 1), timeout, message)

    async with anyio.create_task_group() as group:
        group.start_soon(report)
        result = await anyio.to_thread.run_sync(
            lambda: run_guardctl(environ, args, stdin, timeout, on_stderr=said.feed)
        )
        group.cancel_scope.cancel()
    return result


def _check_through_broker(environ: Mapping[str, str], line: str) -> dict[str, Any]:
    """`guardctl check --json LINE` run by the broker, as the tool's answer."""
    import json

    result = run_guardctl(environ, ["check", "--json", line], None, RUN_SECONDS_AFTER_APPROVAL)
    try:
        answer = json.loads(result.stdout)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise ToolError(f"guardctl: {result.stderr.strip() or 'the broker gave no decision'}")
    return answer


def serve(env: Environment) -> int:
    """Serve MCP on this process's stdin and stdout until the client hangs up."""
    build_server(env).run("stdio")
    return ExitStatus.OK


if __name__ == "__main__":
    raise SystemExit(serve(Environment()))
