"""The path of one kubectl invocation: decide → record → (approve) → credentials → run → mask.

`guardctl ARGS…` and the `kubectl` shim end here. Nothing reaches the cluster unless the
decision allows it and the audit record and cast could be written first. A command allowed
outright may have kubectl started before that (`_started_ahead`), held before its first
contact with the cluster until then.
"""

import os
import re
import shlex
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple

from guardctl.env import Environment
from guardctl.model import Action, Decision, KubectlCall, ParsedLine, RuleHit, SimpleCommand
from guardctl.status import ExitStatus

if TYPE_CHECKING:
    from guardctl.app import Checker

# `-f -` manifests are read by guardctl first (to inspect them), then handed to kubectl;
# past this size they count as unseen
MAX_STDIN_MANIFEST = 10 * 1024 * 1024
# the rule id of what a broker refuses to run whatever the rules say (broker.inputs)
BROKER_RULE = "broker-refused"
# kubectl's exit status for a file it cannot read: 1, and for `diff` 2 (over 1: kubectl or
# diff failed; 1 means differences were found)
_KUBECTL_FAILED = 1
_KUBECTL_DIFF_FAILED = 2
# a word kubectl could take for a plugin's name (compiled here: a broker's worker inherits it)
_PLUGIN_NAME = re.compile(r"[A-Za-z0-9][\w.-]*")


class Invocation(NamedTuple):
    argv: tuple[str, ...]  # kubectl's words, without the program
    stdin_text: str | None  # a `-f -` manifest guardctl read from its stdin, if any
    stdin_state: str  # SimpleCommand.stdin_from for the decision

    @property
    def line(self) -> str:
        return shlex.join(["kubectl", *self.argv])

    def command(self) -> SimpleCommand:
        return SimpleCommand(
            argv=("kubectl", *self.argv),
            stdin_from=self.stdin_state,
            stdin=self.stdin_text,
        )


def read_invocation(env: Environment, argv: Sequence[str]) -> Invocation:
    """The invocation, with a `-f -` manifest read from stdin so the decision can see it."""
    if "-" not in _filename_values(argv) or env.stdin.isatty():
        return Invocation(tuple(argv), None, "inherit" if env.stdin.isatty() else "pipe")
    data = env.binary(env.stdin).read(MAX_STDIN_MANIFEST + 1)
    if len(data) > MAX_STDIN_MANIFEST:
        return Invocation(tuple(argv), None, "pipe")  # too large to inspect: unseen
    return Invocation(tuple(argv), data.decode("utf-8", errors="replace"), "heredoc")


def _filename_values(argv: Sequence[str]) -> list[str]:
    from guardctl.firewall.normalize import normalize

    call = normalize(SimpleCommand(argv=("kubectl", *argv)))
    return list(call.flags.get("filename", ()))


def decide_invocation(
    env: Environment, invocation: Invocation, checker: "Checker | None" = None
) -> Decision:
    """The policy's decision; through a broker, its files are the client's and what the
    broker will not run (`Caller.refusal`) is denied whatever the rules say. `checker`
    (kubectl's words: `Checker.load(env, expand=False)`) keeps the kustomizations it
    rendered, for the run."""
    from guardctl.app import Checker

    if checker is None:
        checker = Checker.load(env, expand=False)
    parsed = ParsedLine(line=invocation.line, commands=(invocation.command(),))
    decision = checker.decide(parsed)
    if env.caller is None or decision.action is Action.DENY:
        return decision
    call = decision.commands[0].call
    reason = env.caller.refusal(call, checker.context.plugins) if call is not None else None
    if reason is None:
        return decision
    hit = RuleHit(id=BROKER_RULE, action=Action.DENY, reason=reason)
    return decision._replace(
        action=Action.DENY,
        reason=f"denied by guardctl's broker: {reason}.",
        commands=tuple(
            c._replace(action=Action.DENY, hits=(*c.hits, hit)) for c in decision.commands
        ),
    )


class _Recorded:
    """A masking filter whose output also goes into the cast: raw bytes never leave here.

    Its masker is made by `prepare`, which the runner calls once kubectl is spawned (the
    work overlaps kubectl's start-up), or else by the first output."""

    def __init__(self, make_masker: Callable[[], Any], recording: Any, stream: str) -> None:
        self._make_masker = make_masker
        self._masker: Any = None
        self._recording = recording
        self._stream = stream
        self.failure: Exception | None = None  # the cast stopped taking output

    def prepare(self) -> Any:
        if self._masker is None:
            self._masker = self._make_masker()
        return self._masker

    def feed(self, data: bytes) -> bytes:
        return self._shown(self.prepare().feed(data))

    def flush(self) -> bytes:
        return self._shown(self.prepare().flush())

    def _shown(self, masked: bytes) -> bytes:
        """What may be shown: only what the cast holds. When the cast fails, nothing more is
        shown and kubectl is stopped (runner.StopOutput): an unrecorded run must not go on."""
        from guardctl.errors import UnsafeError
        from guardctl.running.runner import StopOutput

        if masked and self.failure is None:
            try:
                self._recording.output(masked, self._stream)
            except UnsafeError as err:
                self.failure = err
        if self.failure is not None:
            raise StopOutput(str(self.failure))
        return bytes(masked)


class _Outcome:
    """What one invocation ended with, for the completing audit record."""

    __slots__ = ("code", "approver")

    def __init__(self) -> None:
        self.code: int = ExitStatus.ERROR
        self.approver: Any = None  # guardctl.recording.audit.Approver when a human approved


def run_kubectl(env: Environment, argv: Sequence[str]) -> int:
    """Decide `kubectl ARGV`, record it, and run it when allowed. Returns the exit status."""
    from guardctl.app import Checker
    from guardctl.recording import recorder

    invocation = read_invocation(env, argv)
    checker = Checker.load(env, expand=False)
    decision = decide_invocation(env, invocation, checker)
    unknown = _unknown_command(decision, checker.context.plugins)
    if unknown is not None:
        env.stderr.write(_unknown_message(unknown))
        return ExitStatus.ERROR
    session = recorder.check_session_id(
        env.environ.get("GUARDCTL_SESSION") or recorder.new_session_id()
    )
    use_pty = env.stdin.isatty() and env.stdout.isatty()
    with _started_ahead(env, invocation, decision, use_pty) as ahead:
        return _record_and_act(env, invocation, checker, decision, session, use_pty, ahead)


def _record_and_act(
    env: Environment, invocation: Invocation, checker: "Checker", decision: Decision,
    session: str, use_pty: bool, ahead: "_Ahead | None",
) -> int:
    """Open the cast and write the "started" record, then act on the decision."""
    from guardctl.errors import UnsafeError
    from guardctl.recording import audit, cast, recorder
    from guardctl.recording.retention import load_settings

    width, height = _terminal_size(env)
    cap = load_settings(env.config_path, env.cache_dir).cast_max_size
    try:
        recording = recorder.open_recording(
            env.state_dir,
            session,
            width=width,
            height=height,
            command=invocation.line,
            meta=cast.decision_meta(session, decision),
            onlcr=not use_pty,
            cap=cap,
        )
    except UnsafeError as err:
        return _unrecorded(env, decision, err)
    with recording:
        log = audit.AuditLog(audit.log_path(env.state_dir))
        try:
            handle = log.start(
                session=session,
                argv=("kubectl", *invocation.argv),
                line=invocation.line,
                decision=decision,
                cast=recording.start_ref(),
                user=env.caller.user if env.caller is not None else None,
                cwd=env.caller.cwd if env.caller is not None else None,
                agent=env.caller.agent if env.caller is not None else None,
            )
        except UnsafeError as err:
            return _unrecorded(env, decision, err)
        return _recorded_run(env, invocation, checker, decision, recording, log, handle, use_pty,
                             ahead)


def _unrecorded(env: Environment, decision: Decision, problem: Exception) -> int:
    """No record could be started: nothing runs (UnsafeError, exit 13), but a denied command
    still gets the policy's answer, with a line on why it is not recorded."""
    if decision.action is not Action.DENY:
        raise problem
    env.stderr.write(_denied(decision) + "\n")
    _warn(env, problem)
    return ExitStatus.DENIED


def _recorded_run(
    env: Environment, invocation: Invocation, checker: "Checker", decision: Decision,
    recording: Any, log: Any, handle: Any, use_pty: bool, ahead: "_Ahead | None",
) -> int:
    """Act on the decision once its "started" record is written; the "completed" record
    follows whatever happens, with the status the process ends with."""
    from guardctl.errors import exit_status_for
    from guardctl.recording import cast

    outcome = _Outcome()
    try:
        recording.marker(cast.decision_label(decision))
        rendered = checker.render.done if checker.render is not None else {}
        outcome.code = _act(env, invocation, decision, recording, use_pty, outcome, rendered,
                            ahead)
    except BaseException as exc:
        outcome.code = exit_status_for(exc)
        raise
    finally:
        if env.caller is not None:
            # kubectl's status goes to the client now; the records below follow it
            env.caller.report(outcome.code)
        _complete(env, recording, log, handle, outcome)
    return outcome.code


def _complete(env: Environment, recording: Any, log: Any, handle: Any, outcome: _Outcome) -> None:
    """Close the cast and write the "completed" record. When either cannot be written, the
    command's status stands (it ran, or it did not: its exit says which) and stderr says
    what is missing from the record."""
    from guardctl.errors import UnsafeError

    try:
        extent = recording.finish()
    except UnsafeError as err:
        extent = None
        _warn(env, err)
    try:
        log.finish(handle, int(outcome.code), approver=outcome.approver, cast=extent,
                   agent=env.caller.agent if env.caller is not None else None)
    except UnsafeError as err:
        _warn(env, err)


def _warn(env: Environment, problem: object) -> None:
    env.stderr.write(f"guardctl: {problem}\n")
    env.stderr.flush()


def _unknown_command(decision: Decision, plugins: frozenset[str]) -> str | None:
    """The first word when kubectl has no such command: kubectl would only look for a
    plugin, and the kubectl guardctl runs has none on its PATH, so it can only fail. Not a
    question for a human: kubectl's own error, at once."""
    from guardctl.firewall.flagtable import ROOT, flag_table

    command = decision.commands[0] if len(decision.commands) == 1 else None
    if command is None or command.call is None:
        return None
    if any(h.action is Action.DENY and h.id != BROKER_RULE for h in command.hits):
        return None  # a rule's deny says more (the broker's own refusal of plugins does not)
    verb = command.call.verb
    if not _PLUGIN_NAME.fullmatch(verb) or flag_table().child(ROOT, verb):
        return None  # known, a sub-command path, empty, or only known at run time
    if verb in plugins:
        return None
    return verb


def _unknown_message(verb: str) -> str:
    """kubectl's words for it, and guardctl's own command when one is spelled alike."""
    import difflib

    from guardctl.commands import guardctl_commands

    message = f'error: unknown command "{verb}" for "kubectl"\n'
    close = difflib.get_close_matches(verb, sorted(guardctl_commands()), n=1)
    if close:
        message += f"guardctl: did you mean `guardctl {close[0]}`?\n"
    return message


def _act(
    env: Environment,
    invocation: Invocation,
    decision: Decision,
    recording: Any,
    use_pty: bool,
    outcome: _Outcome,
    rendered: dict[str, str],
    ahead: "_Ahead | None",
) -> int:
    if decision.action is Action.DENY:
        _say(env, recording, _denied(decision))
        return ExitStatus.DENIED
    call = decision.commands[0].call
    problem = env.caller.prefetch(call) if env.caller is not None and call else None
    if problem is not None:
        # what kubectl itself says of a file it cannot read, and its exit code
        _say(env, recording, f"error: {problem}")
        return _KUBECTL_DIFF_FAILED if call is not None and call.verb == "diff" else _KUBECTL_FAILED
    context = _chosen_context(call)
    if decision.action is Action.APPROVE and not _preapproved(env, invocation, decision, recording):
        if not _approved(env, invocation, decision, recording, outcome, context):
            return ExitStatus.DECLINED
    return _run_allowed(env, invocation, recording, use_pty, context, rendered, ahead)


def _denied(decision: Decision) -> str:
    return f"guardctl: {decision.reason} Nothing was sent to the cluster."


def _chosen_context(call: KubectlCall | None) -> str | None:
    """The managed context kubectl's `--context` names (None: the default one)."""
    if call is None or "context" not in call.global_flags:
        return None
    return call.flag("context")


def _approved(
    env: Environment,
    invocation: Invocation,
    decision: Decision,
    recording: Any,
    outcome: _Outcome,
    context: str | None,
) -> bool:
    """Ask a human (inline, or through `guardctl approvals`); record who answered."""
    from guardctl.approvals import flow
    from guardctl.config import load_contexts
    from guardctl.recording import cast

    contexts = load_contexts(env.config_path, env.cache_dir)
    config = contexts.named(context) if contexts else None
    answer = flow.request_approval(
        env,
        decision,
        invocation.line,
        cluster=config.server if config else "",
        diff=_diff_for(env, invocation, context),
        manifest=stdin_manifest(env, invocation),
        # what a command without -n touches is the chosen context's namespace
        defaults=(config.context, config.namespace) if config else None,
    )
    who = answer.approver
    verdict = "approved" if answer.approved else "declined" if who else "not given"
    recording.marker(cast.approval_label(
        verdict, who.user if who else None, how=answer.how, tty=who.tty if who else None,
        reason=answer.reason,
    ))
    _say(env, recording, flow.outcome_message(answer), before_run=True)
    if answer.approved:
        outcome.approver = answer.approver
    return answer.approved


def _preapproved(
    env: Environment, invocation: Invocation, decision: Decision, recording: Any
) -> bool:
    """True when `guardctl sh -c` had this exact command approved as part of its whole line."""
    from guardctl.approvals import grants
    from guardctl.recording import cast

    if not grants.consume_for(env, invocation.argv, decision):
        return False
    recording.marker(cast.approval_label("approved with its line"))
    return True


def _say(env: Environment, recording: Any, message: str, *, before_run: bool = False) -> None:
    """Show and record guardctl's own message. A cast that cannot take it stops a command
    that is yet to run (`before_run`: UnsafeError); after a run, or when nothing will run,
    the status stands and stderr says what the record lacks."""
    from guardctl.errors import UnsafeError

    env.stderr.write(message + "\n")
    env.stderr.flush()
    try:
        recording.say(message + "\n")
    except UnsafeError as err:
        if before_run:
            raise
        _warn(env, err)


class _Cluster(NamedTuple):
    """What running kubectl needs: its path, the minted token and the secrets to mask."""

    kubectl: str
    server: str
    ca_data: str
    token: str
    namespace: str  # the context's default namespace
    name: str  # the kubeconfig's name for it: the managed context `--context` chose
    # what the masker hides beside its detectors: the token itself, and whatever has the
    # digest of one of the stored credential's secrets
    literals: tuple[str, ...]
    digests: tuple[str, ...]


def _cluster(env: Environment, context: str | None) -> _Cluster:
    from guardctl.running import creds, kubeconfig, runner

    config = creds.require_config(env, context)
    kubectl = runner.find_kubectl(env)
    token = creds.mint_token(env, config)
    return _Cluster(
        kubectl=kubectl,
        server=config.server,
        ca_data=config.certificate_authority_data,
        token=token.value,
        namespace=config.namespace,
        name=context or kubeconfig.NAME,
        literals=(token.value,),
        digests=token.mask_digests,
    )


def _diff_for(
    env: Environment, invocation: Invocation, context: str | None
) -> Callable[[], str | None] | None:
    """For apply/create/replace -f: the server-side `kubectl diff` a human sees before approving.

    Run with the agent's own short-lived credentials and masked; a `-f -` manifest is the one
    guardctl read from stdin. It raises `DiffUnavailable` saying why there can be no diff
    (a remote or unread manifest, a kustomization, kubectl diff failing). None for other
    verbs and for commands without manifests.
    """
    from guardctl.approvals.queue import DiffUnavailable
    from guardctl.firewall.normalize import normalize

    call = normalize(invocation.command())
    files = call.flags.get("filename", ())
    if call.verb not in ("apply", "create", "replace") or not (files or call.has_flag("kustomize")):
        return None

    def diff() -> str | None:
        import subprocess

        from guardctl.masking import mask
        from guardctl.running.lifeline import die_with_this_process

        reason = _no_diff(call, invocation)
        if reason is not None:
            raise DiffUnavailable(reason)
        cluster = _cluster(env, context)
        args = [f"--filename={f}" for f in files]
        if context is not None:
            args.append(f"--context={context}")
        if call.namespace:
            args.append(f"--namespace={call.namespace}")
        if call.has_flag("recursive") and call.flag("recursive") != "false":
            args.append("--recursive")
        stdin = invocation.stdin_text.encode("utf-8") if invocation.stdin_text else b""
        with _kubeconfig_for(env, cluster) as path:
            words = _local_argv(env, ("diff", *args), path.parent, {})
            proc = subprocess.run(
                [cluster.kubectl, *words],
                env=_kubectl_environ(env, path),
                input=stdin,
                preexec_fn=die_with_this_process(),
                capture_output=True,
                timeout=60,
                check=False,
            )

        def masked(data: bytes) -> str:
            return mask.mask_text(data.decode("utf-8", "replace"), _detectors(env),
                                  cluster.literals, digests=cluster.digests)

        # kubectl diff exits 1 when there are differences, >1 on errors
        if proc.returncode not in (0, 1):
            said = masked(proc.stderr).strip().replace("\n", " ")[:500]
            raise DiffUnavailable(f"kubectl diff failed (exit {proc.returncode}): {said}")
        return masked(proc.stdout) or "(no changes)"

    return diff


def _no_diff(call: KubectlCall, invocation: Invocation) -> str | None:
    """Why `kubectl diff` cannot be run for `call`, or None when it can."""
    for value in call.flags.get("filename", ()):
        if value.lower().startswith(("http://", "https://")):
            return f"-f {value}: remote manifests are not fetched"
        if value == "-" and invocation.stdin_text is None:
            return ("the manifest on stdin was not read (a terminal, or more than "
                    f"{MAX_STDIN_MANIFEST // (1024 * 1024)} MiB)")
    if call.has_flag("kustomize"):
        return "kubectl diff is not run on kustomizations (-k)"
    return None


def stdin_manifest(env: Environment, invocation: Invocation) -> str | None:
    """The `-f -` manifest guardctl read from stdin, masked, to show a human; else None."""
    from guardctl.masking import mask

    if invocation.stdin_text is None:
        return None
    return mask.mask_text(invocation.stdin_text, _detectors(env))


def _kubeconfig_for(env: Environment, cluster: _Cluster) -> AbstractContextManager[Path]:
    from guardctl.running import kubeconfig

    return kubeconfig.temp_kubeconfig(
        env, cluster.server, cluster.ca_data, cluster.token, cluster.namespace, cluster.name
    )


def _detectors(env: Environment) -> Any:
    """The detectors that mask this run (`team_rules`); the team's rules left out are said
    on stderr, and a rule file that cannot be read stops the run (UnsafeError)."""
    from guardctl.errors import UnsafeError, UsageError
    from guardctl.running.team_rules import detectors_for

    try:
        found, problems = detectors_for(env)
    except UsageError as err:
        raise UnsafeError(f"{err}: fix `detectors:` in {env.config_path}") from err
    if problems:
        env.stderr.write(f"guardctl: {len(problems)} gitleaks rules cannot mask this output; "
                         f"`guardctl mask --rules-from FILE </dev/null` lists them\n")
    return found


def _run_allowed(
    env: Environment,
    invocation: Invocation,
    recording: Any,
    use_pty: bool,
    context: str | None,
    rendered: dict[str, str],
    ahead: "_Ahead | None",
) -> int:
    from guardctl.masking import mask
    from guardctl.running import runner

    cluster = _cluster(env, context)
    found = _detectors(env)
    stdout_filter = _Recorded(
        lambda: mask.masker_for(
            invocation.argv, found, cluster.literals, digests=cluster.digests
        ),
        recording,
        "stdout",
    )
    stderr_filter = _Recorded(
        lambda: mask.Masker(found, cluster.literals, digests=cluster.digests),
        recording,
        "stderr",
    )
    env.stdout.flush()
    env.stderr.flush()
    outputs: dict[str, Any] = {
        "stdout_filter": stdout_filter,
        "stderr_filter": stderr_filter,
        "stdout": env.binary(env.stdout),
        "stderr": env.binary(env.stderr),
        "started": lambda: _started(env, stdout_filter, stderr_filter),
    }
    if ahead is not None:
        ahead.gate.fill(_kubeconfig_document(cluster))
        code = runner.run_spawned(ahead.child, **outputs)
        problem = _ran(env, code, stdout_filter, stderr_filter)
    else:
        plugin = _plugin(env, invocation)
        with _kubeconfig_for(env, cluster) as path:
            words = _local_argv(env, invocation.argv, path.parent, rendered)
            code = runner.run(
                [plugin, *words[1:]] if plugin else [cluster.kubectl, *words],
                _kubectl_environ(env, path, plugin=plugin is not None),
                stdin=_stdin_for(invocation),
                use_pty=use_pty,
                **outputs,
            )
            problem = _ran(env, code, stdout_filter, stderr_filter)
    if problem is not None:
        _say(env, recording, f"error: {problem}")
        return ExitStatus.ERROR
    return code


def _ran(env: Environment, code: int, *filters: _Recorded) -> str | None:
    """After kubectl exited with `code`, while its kubeconfig is still there: say what a
    stopped filter kept from the output, hand a `kubectl cp` copy over and the status to a
    broker's client. What could not be handed over, or None."""
    for stopped in (output_filter.failure for output_filter in filters):
        if stopped is not None:
            _warn(env, f"{stopped}; what kubectl printed after that was not shown"
                       f" (kubectl exited {code})")
            break
    # through a broker, what `kubectl cp` brought from a pod goes to the agent's side
    problem = env.caller.deliver() if env.caller is not None and code == 0 else None
    if problem is None and env.caller is not None:
        env.caller.report(code)  # before the temporary kubeconfig is removed
    return problem


class _Ahead(NamedTuple):
    """kubectl started before its records, waiting on its kubeconfig (`kubeconfig.Gate`)."""

    gate: Any  # guardctl.running.kubeconfig.Gate
    child: Any  # guardctl.running.runner.Spawned


# flags with which kubectl could reach a server without reading its kubeconfig, or read
# preferences that may add flags (the policy denies them by default; a command that has one
# is never started ahead)
_OWN_SERVER_FLAGS = frozenset({"server", "kubeconfig", "token", "username", "password", "kuberc"})


@contextmanager
def _started_ahead(
    env: Environment, invocation: Invocation, decision: Decision, use_pty: bool
) -> Iterator[_Ahead | None]:
    """kubectl started now, while its cast, its "started" record and its token are made: its
    own start-up takes most of its time before it reaches the cluster, and it cannot reach it
    before `_run_allowed` fills its kubeconfig (`kubeconfig.Gate`). Only for a command the
    policy allows outright and that kubectl runs with its own words: no approval, terminal,
    plugin or kustomization (`-k`, `kubectl kustomize`: kubectl may run its plugins before it
    reads a kubeconfig), no local input or `cp` destination a broker puts a copy in place of,
    and no flag that names a server (`_OWN_SERVER_FLAGS`). Yields None when the command
    is not one; a kubectl never handed its kubeconfig is killed when the block ends."""
    from guardctl.errors import UnsafeError
    from guardctl.running import kubeconfig, runner

    kubectl = None
    if _runs_as_is(env, invocation, decision, use_pty):
        with suppress(UnsafeError):  # no kubectl: said in its place, after the record
            kubectl = runner.find_kubectl(env)
    if kubectl is None:
        yield None
        return
    with kubeconfig.gated_kubeconfig(env) as gate:
        child = None
        with suppress(UnsafeError):  # it could not be started: the same, in its place
            child = runner.Spawned(
                [kubectl, *invocation.argv], _kubectl_environ(env, gate.path),
                _stdin_for(invocation),
            )
        if child is None:
            yield None
            return
        try:
            yield _Ahead(gate, child)
        finally:
            child.close()


def _runs_as_is(
    env: Environment, invocation: Invocation, decision: Decision, use_pty: bool
) -> bool:
    """Whether kubectl runs `invocation` with its own words and guardctl's kubeconfig alone
    (see `_started_ahead`)."""
    call = decision.commands[0].call if decision.commands else None
    if decision.action is not Action.ALLOW or use_pty or call is None:
        return False
    if call.verb == "kustomize" or call.has_flag("kustomize"):
        return False  # kubectl renders, and may run a kustomization's plugins, on its own
    if not _OWN_SERVER_FLAGS.isdisjoint(call.flags):
        return False
    if env.caller is not None and env.caller.rewrites(call):
        return False
    return _plugin(env, invocation) is None


def _kubeconfig_document(cluster: _Cluster) -> dict[str, Any]:
    from guardctl.running import kubeconfig

    return kubeconfig.render(cluster.server, cluster.ca_data, {"token": cluster.token},
                             cluster.namespace, cluster.name)


def _started(env: Environment, *filters: _Recorded) -> None:
    """What a run does once kubectl is spawned, while kubectl's own start-up keeps it from
    printing anything: the output filters, and the private folders of runs that were killed
    (a scan of the temporary folder, off the path to kubectl's start). A broker's worker
    leaves that scan to the spare workers, which make it while they wait for a request."""
    from guardctl.running import kubeconfig

    for output_filter in filters:
        output_filter.prepare()
    if env.caller is None:
        kubeconfig.sweep_stale(env)


def _local_argv(
    env: Environment, argv: tuple[str, ...], folder: Path, rendered: dict[str, str]
) -> tuple[str, ...]:
    """kubectl's arguments as kubectl gets them: each `-k DIR` the kustomization rendered for
    the decision (in `folder`), and through a broker, each other local input the private copy
    (in `folder`) of what the client sent and the policy read."""
    from guardctl.firewall.normalize import normalize
    from guardctl.running import kustomize

    call = normalize(SimpleCommand(argv=("kubectl", *argv)))
    words = argv if env.caller is None else env.caller.kubectl_argv(call, argv, folder)
    return kustomize.rewrite(words, call, rendered, folder) if call.has_flag("kustomize") else words


def _kubectl_environ(env: Environment, kubeconfig: Path, plugin: bool = False) -> dict[str, str]:
    """kubectl's whole environment (`kubectl_env`): nothing of the caller's. A plugin gets
    the system's programs too (most are scripts that run kubectl, sh, jq...)."""
    from guardctl.running import kubectl_env

    home = kubectl_env.prepare(env.cache_dir)
    environ = kubectl_env.environ(home, kubeconfig, kubeconfig.parent)
    if plugin:
        environ["PATH"] = os.pathsep.join((environ["PATH"], *kubectl_env.SYSTEM_PATH))
    return environ


def _plugin(env: Environment, invocation: Invocation) -> str | None:
    """The program of the listed plugin the invocation names (its first word), else None;
    UnsafeError when the config names one that cannot be run."""
    from guardctl.config import load_contexts
    from guardctl.errors import UnsafeError

    if not invocation.argv:
        return None
    found = load_contexts(env.config_path, env.cache_dir)
    path = dict(found.plugins).get(invocation.argv[0]) if found else None
    if path is None:
        return None
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise UnsafeError(f"plugin {invocation.argv[0]!r}: {path} is not a program guardctl "
                          f"can run: fix `plugins:` in {env.config_path}")
    return path


def _stdin_for(invocation: Invocation) -> IO[bytes] | None:
    """kubectl's stdin: the manifest guardctl inspected (through a pipe), or guardctl's own."""
    if invocation.stdin_text is None:
        return None
    data = invocation.stdin_text.encode("utf-8")
    read_end, write_end = os.pipe()

    def feed() -> None:
        with os.fdopen(write_end, "wb") as pipe:
            try:
                pipe.write(data)
            except BrokenPipeError:
                pass  # kubectl stopped reading; it reports that itself

    threading.Thread(target=feed, daemon=True).start()
    return os.fdopen(read_end, "rb")


def _terminal_size(env: Environment) -> tuple[int, int]:
    try:
        size = os.get_terminal_size(env.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        return 80, 24
    return size.columns, size.lines
