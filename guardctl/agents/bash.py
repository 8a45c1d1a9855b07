"""Running a decided line with bash, every kubectl it starts sent back through guardctl.

`guardctl sh -c LINE` decides the whole line first (in this process, or in the broker); then
bash runs it here, as the caller, with a private folder first on PATH that holds a `kubectl`
shim, so each kubectl the line starts comes back through guardctl with its real words. The
grant token (a human approved the line) travels in bash's environment to those kubectl
calls, which hand it to whoever decides them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from guardctl.approvals.grants import TOKEN_VARIABLE
from guardctl.errors import UnsafeError
from guardctl.signals import signal_handlers
from guardctl.status import exit_for_child

SESSION_VARIABLE = "GUARDCTL_SESSION"
# after a forwarded signal, how long bash gets before SIGKILL
KILL_GRACE_SECONDS = 10.0


def child_environ(environ: Mapping[str, str], shim_dir: Path, token: str) -> dict[str, str]:
    """bash's environment: the shim first on PATH, one session, the grant token if any."""
    from guardctl.recording import recorder

    child = {k: v for k, v in environ.items() if k != TOKEN_VARIABLE}
    child["PATH"] = os.pathsep.join([str(shim_dir), child.get("PATH", os.defpath)])
    child[SESSION_VARIABLE] = recorder.check_session_id(
        child.get(SESSION_VARIABLE) or recorder.new_session_id()
    )
    if token:
        child[TOKEN_VARIABLE] = token
    return child


def run_bash(
    environ: Mapping[str, str], line: str, token: str, fds: tuple[int, int, int] = (0, 1, 2)
) -> int:
    """Run LINE with bash (stdin, stdout, stderr = `fds`); bash's exit status."""
    from guardctl.agents.shim import write_shim
    from guardctl.runtime import launcher

    bash = shutil.which("bash", path=environ.get("PATH", os.defpath))
    if bash is None:
        raise UnsafeError("bash not found on PATH: guardctl sh needs it to run the line")
    # mkdtemp makes the folder 0700: nobody else can swap the shim while the line runs
    with tempfile.TemporaryDirectory(prefix="guardctl-sh-") as folder:
        # the kubectl calls of the line take sh's own settings, whatever the line sets
        write_shim(Path(folder), launcher(prefer_script=False), pin=environ)
        child = subprocess.Popen(
            [bash, "-c", line],
            env=child_environ(environ, Path(folder), token),
            stdin=fds[0],
            stdout=fds[1],
            stderr=fds[2],
        )
        with _forwarding(child, (signal.SIGTERM, signal.SIGHUP)):
            return exit_for_child(_wait(child))


def run_line(line: str, token: str) -> int:
    """`run_bash` for a broker's client: this process's environment and streams, and Ctrl-C
    for bash (not for the broker, which keeps the grant until bash ends)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return run_bash(os.environ, line, token)
    except UnsafeError as err:
        os.write(2, f"guardctl: {err}\n".encode())
        return int(err.exit_status)
    finally:
        signal.signal(signal.SIGINT, previous)


def _wait(child: subprocess.Popen[bytes]) -> int:
    try:
        return child.wait()
    except KeyboardInterrupt:
        # Ctrl-C in a terminal reached bash too (same process group); a `kill -INT` of
        # guardctl alone did not, so pass it on, then give bash a bounded time to finish
        child.send_signal(signal.SIGINT)
        try:
            return child.wait(timeout=KILL_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            child.kill()
            return child.wait()


@contextmanager
def _forwarding(child: subprocess.Popen[bytes], signals: Sequence[int]) -> Iterator[None]:
    """Pass these signals on to bash while it runs, so guardctl never dies first."""

    def forward(signum: int, _frame: FrameType | None) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    with signal_handlers(dict.fromkeys(signals, forward)):
        yield
