"""guardctl as an MCP server over stdio: the tools `kubectl` and `check` for MCP agents.

Both tools take the command line's path. `check` decides a line with the same Checker as
`guardctl check --json` and returns that object. `kubectl` runs `python -m guardctl kubectl
ARGS` as a child (guardctl.running.child), so deciding, recording, approval, short-lived
credentials and masking are exactly the CLI's, and returns its stdout, stderr and exit
code. A deny is an ordinary result (exit code 11, the rule and reason on stderr), not a
protocol error: the agent is meant to read it and change course.

    python -m guardctl.agents.mcp      # or `guardctl mcp`
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

from guardctl import __version__
from guardctl.env import Environment
from guardctl.errors import GuardError
from guardctl.running.child import run_guardctl
from guardctl.status import ExitStatus

# a run may first wait for a human (GUARDCTL_APPROVAL_TIMEOUT), then for kubectl itself
RUN_SECONDS_AFTER_APPROVAL = 300.0

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
    def kubectl(args: list[str], stdin: str | None = None) -> dict[str, Any]:
        return run_guardctl(environ, ["kubectl", *args], stdin, run_timeout(environ)).to_json()

    return server


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
