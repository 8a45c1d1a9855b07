"""`guardctl demo`: guardctl end to end in about twenty seconds, with nothing to set up.

An in-process API server (the devserver), its admin credential imported into a throwaway
file keyring and config in a temporary folder, then the real path (`python -m guardctl …`
children) through an allowed read, a denied delete, an exec that waits for a human, a
Secret shown masked, and the replay of the recorded session. The user's own config,
keyring and records are never touched: the children get their own GUARDCTL_HOME,
GUARDCTL_CONFIG, XDG_DATA_HOME, XDG_RUNTIME_DIR and PYTHON_KEYRING_BACKEND.

Approvals are answered by the demo itself through `guardctl.approvals.queue` (as `guardctl
approvals` would), and it says so; where that is not possible it shows the policy's verdict
and masks the Secret with `guardctl mask` instead, and says that too.
"""

from __future__ import annotations

import shlex
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from guardctl.env import Environment
from guardctl.errors import GuardError
from guardctl.running.child import RunResult, run_guardctl
from guardctl.status import ExitStatus

if TYPE_CHECKING:
    from rich.console import Console

    from guardctl.devserver import DevServer

STEP_TIMEOUT = 60.0
# how long the demo looks for the queued approval request of a running command
APPROVAL_WAIT = 10.0
POLL_SECONDS = 0.1
# children wait this long for an answer, so a demo that cannot answer still ends quickly
CHILD_APPROVAL_TIMEOUT = "15"
PAUSE_SECONDS = 0.8
SERVICE_ACCOUNT = "guardctl/guardctl-agent"
APPROVER = "guardctl-demo"
POD = "web-7d4b9c8f6d-x2k9p"
SECRET_ARGS = ("get", "secret", "app-secrets", "-n", "dev", "-o", "yaml")
# the user's settings that would change what the demo shows
# the demo runs its own world in same-user mode: none of the person's settings, no broker
DROPPED = ("GUARDCTL_RULES", "GUARDCTL_SESSION", "KUBECONFIG", "GUARDCTL_BROKER")


@dataclass
class Demo:
    """The narrator: a console for the user, a private world for the children."""

    console: Console
    environ: dict[str, str]
    state: Path
    server: DevServer
    admin_kubeconfig: Path
    pause: float
    failures: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ narration

    def title(self, text: str) -> None:
        time.sleep(self.pause)
        self.console.rule(f"[bold]{text}")

    def say(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)

    def show(self, args: Sequence[str], result: RunResult) -> None:
        from rich.text import Text

        self.console.print(Text("$ " + shlex.join(["guardctl", *args]), style="bold cyan"))
        for text, style in ((result.stdout, ""), (result.stderr, "yellow")):
            if text.strip():
                self.console.print(Text(text.rstrip("\n"), style=style))
        self.console.print(Text(f"exit code {result.exit_code}", style="dim"))

    def expect(self, step: str, result: RunResult, *codes: int) -> None:
        if result.exit_code not in codes:
            wanted = " or ".join(str(int(c)) for c in codes)
            self.failures.append(f"{step}: exit code {result.exit_code}, expected {wanted}")

    # ------------------------------------------------------------------ running

    def guardctl(self, *args: str, stdin: str | None = None, show: bool = True) -> RunResult:
        result = run_guardctl(self.environ, args, stdin, STEP_TIMEOUT)
        if show:
            self.show(args, result)
        return result

    def answering(self, args: Sequence[str], approve: bool) -> tuple[RunResult, str | None]:
        """Run `guardctl ARGS` and answer its approval request the way a human would.

        Returns the result and what the answer did (None: no request appeared to answer).
        """
        holder: list[RunResult] = []
        worker = threading.Thread(
            target=lambda: holder.append(run_guardctl(self.environ, args, None, STEP_TIMEOUT)),
            daemon=True,
        )
        worker.start()
        answered: str | None = None
        deadline = time.monotonic() + APPROVAL_WAIT
        while answered is None and worker.is_alive() and time.monotonic() < deadline:
            answered = self._answer_pending(approve)
            time.sleep(POLL_SECONDS)
        worker.join(STEP_TIMEOUT + APPROVAL_WAIT)
        if not holder:
            raise GuardError(f"`guardctl {shlex.join(args)}` did not finish")
        self.show(args, holder[0])
        return holder[0], answered

    def _answer_pending(self, approve: bool) -> str | None:
        try:
            from guardctl.approvals import queue
            from guardctl.recording.audit import Approver
        except ImportError:
            return None  # an older build without the approval flow
        try:
            pending = queue.Queue(self.state).pending(time.time())
            if not pending:
                return None
            return queue.answer(
                self.state, pending[0].id, approved=approve,
                approver=Approver(user=APPROVER, tty=None, at=time.time()),
                reason="" if approve else "the demo said no, as a human might",
            )
        except (queue.AnswerError, GuardError, OSError):
            return None


# --------------------------------------------------------------------------- the steps


def step_read(demo: Demo) -> None:
    demo.title("1. An allowed read")
    demo.say("Reading pods is allowed: guardctl mints a short-lived token for the agent's "
             "ServiceAccount, runs the real kubectl with it, and records the run.")
    demo.expect("allowed read", demo.guardctl("get", "pods", "-n", "dev"), ExitStatus.OK)


def step_deny(demo: Demo) -> None:
    demo.title("2. A denied delete")
    demo.say("Deleting a namespace is denied by policy: exit 11, the rule and the reason on "
             "stderr, and nothing is sent to the cluster.")
    demo.server.clear_requests()
    result = demo.guardctl("delete", "namespace", "prod")
    demo.expect("denied delete", result, ExitStatus.DENIED)
    seen = len(demo.server.requests)
    demo.say(f"The API server received {seen} requests during that command.")
    if seen:
        demo.failures.append(f"denied delete: the API server received {seen} requests")


def step_exec(demo: Demo) -> None:
    demo.title("3. An exec waits for a human")
    args = ("exec", POD, "-n", "dev", "--", "printenv", "HOSTNAME")
    demo.say("Opening a process inside a container needs a human's approval. The verdict:")
    demo.expect("exec verdict", demo.guardctl("check", shlex.join(["kubectl", *args])),
                ExitStatus.NEEDS_APPROVAL)
    demo.say("Run for real, the command waits while a human looks at it in `guardctl "
             "approvals`. Here the demo answers for the human, and says no:")
    result, answered = demo.answering(args, approve=False)
    if answered is None:
        demo.say("(No approval request appeared for the demo to answer: this build declines "
                 "commands that need approval. A human would be asked here.)")
    else:
        demo.say(f"The demo's answer: {answered}. Nothing reached the container.")
    demo.expect("exec", result, ExitStatus.DECLINED)


def step_secret(demo: Demo) -> None:
    demo.title("4. A Secret, masked")
    demo.say("Reading Secret values needs approval too. This time the demo approves; the "
             "values in the output are masked, and stay masked in the recording.")
    result, answered = demo.answering(SECRET_ARGS, approve=True)
    if answered is not None:
        demo.say(f"The demo's answer: {answered}.")
        demo.expect("secret", result, ExitStatus.OK)
        return
    demo.say("(The demo could not approve it in this build, so here is the cluster admin's "
             "own output of the same command, piped through `guardctl mask --for`.)")
    raw = _admin_kubectl(demo, SECRET_ARGS)
    masked = demo.guardctl("mask", "--for", shlex.join(SECRET_ARGS), stdin=raw)
    demo.expect("masked secret", masked, ExitStatus.OK)


def _admin_kubectl(demo: Demo, args: Sequence[str]) -> str:
    """The admin's raw kubectl output: handed to `guardctl mask` only, never printed."""
    from guardctl.running.runner import find_kubectl

    kubectl = find_kubectl(Environment(environ=demo.environ))
    proc = subprocess.run(
        [kubectl, "--kubeconfig", str(demo.admin_kubeconfig), *args],
        env=demo.environ, stdin=subprocess.DEVNULL, capture_output=True,
        timeout=STEP_TIMEOUT, check=False,
    )
    return proc.stdout.decode("utf-8", errors="replace")


def step_replay(demo: Demo) -> None:
    demo.title("5. The replay")
    session = demo.environ["GUARDCTL_SESSION"]
    demo.say("Every command above was recorded (masked output, the decision and the "
             "approval as markers) into one session. Played back at 20x:")
    result = demo.guardctl("replay", session, "--speed", "20", "--idle-limit", "0.5")
    demo.expect("replay", result, ExitStatus.OK)
    demo.expect("audit verify", demo.guardctl("audit", "verify"), ExitStatus.OK)


STEPS: tuple[Callable[[Demo], None], ...] = (step_read, step_deny, step_exec, step_secret)


# --------------------------------------------------------------------------- set-up


def child_environ(env: Environment, root: Path, session: str) -> dict[str, str]:
    """The children's world: every guardctl path inside `root`, a plaintext file keyring."""
    runtime = root / "run"
    runtime.mkdir(mode=0o700)
    environ = {k: v for k, v in env.environ.items() if k not in DROPPED}
    environ.update({
        "GUARDCTL_HOME": str(root / "home"),
        "GUARDCTL_CONFIG": str(root / "config" / "config.yaml"),
        "GUARDCTL_SESSION": session,
        "GUARDCTL_APPROVAL_TIMEOUT": CHILD_APPROVAL_TIMEOUT,
        "XDG_DATA_HOME": str(root / "data"),
        "XDG_RUNTIME_DIR": str(runtime),
        "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
        # the agent has no kubeconfig of its own: guardctl's imported credential is all
        "KUBECONFIG": str(root / "no-kubeconfig"),
    })
    return environ


def _console(env: Environment) -> Console:
    from rich.console import Console

    return Console(file=env.stdout, highlight=False, emoji=False, soft_wrap=True,
                   no_color="NO_COLOR" in env.environ)


def run(env: Environment, *, replay: bool = True, fast: bool = False) -> int:
    """Run the narrated demo; 0 when every step behaved as described, 1 otherwise."""
    from guardctl.broker import forkcontrol
    from guardctl.devserver import DevServer
    from guardctl.recording import recorder
    from guardctl.running.runner import find_kubectl

    console = _console(env)
    find_kubectl(env)  # UnsafeError (exit 13) with the fix, before anything starts
    pause = 0.0 if fast or not env.stdout.isatty() else PAUSE_SECONDS
    with tempfile.TemporaryDirectory(prefix="guardctl-demo-") as tmp, DevServer() as server:
        root = Path(tmp)
        environ = child_environ(env, root, recorder.new_session_id())
        admin = server.write_kubeconfig(root / "admin.kubeconfig")
        demo = Demo(console, environ, Path(environ["GUARDCTL_HOME"]), server, admin, pause)
        console.rule("[bold]guardctl demo")
        demo.say(f"An in-memory Kubernetes API server is listening on {server.url}. Its admin "
                 f"credential was imported into a throwaway keyring in {tmp}, as "
                 f"`guardctl creds import` does; your own config and keyring are not used.")
        imported = demo.guardctl("creds", "import", "--kubeconfig", str(admin),
                                 "--service-account", SERVICE_ACCOUNT, "--ttl", "10m",
                                 show=False)
        if imported.exit_code != ExitStatus.OK:
            demo.say(imported.stderr)
            return ExitStatus.ERROR
        try:
            for step in (*STEPS, step_replay) if replay else STEPS:
                step(demo)
        finally:
            forkcontrol.stop_all(environ["XDG_RUNTIME_DIR"])  # its folder goes now
        return _summary(demo)


def _summary(demo: Demo) -> int:
    demo.console.rule()
    if demo.failures:
        for failure in demo.failures:
            demo.say(f"unexpected: {failure}")
        return ExitStatus.ERROR
    demo.say("Done. Set guardctl up for real: `guardctl creds import`, `guardctl shim install "
             "DIR`, then `guardctl doctor`.")
    return ExitStatus.OK
