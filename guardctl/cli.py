"""guardctl's own commands: the only module that imports click.

`guardctl.main` routes kubectl invocations before this module is imported, so kubectl's
flags never meet click's parser.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING

import click

from guardctl import __version__
from guardctl.env import Environment
from guardctl.status import ExitStatus

if TYPE_CHECKING:
    import ssl

    from guardctl.broker.remote import Tcp


def _env() -> Environment:
    """The Environment `run` was given (a broker's worker passes its caller's), else this
    process's own."""
    given = click.get_current_context().obj
    return given if isinstance(given, Environment) else Environment()


_rules_option = click.option(
    "--rules",
    "extra_rules",
    multiple=True,
    type=click.Path(),
    help="Extra rule file or folder, after the bundled rules and GUARDCTL_RULES (repeatable).",
)


_EPILOG = """\b
Environment:
  GUARDCTL_HOME              state: audit.jsonl, casts/, approvals/
                             (default $XDG_STATE_HOME/guardctl)
  GUARDCTL_CONFIG            config file ($XDG_CONFIG_HOME/guardctl/config.yaml)
  GUARDCTL_RULES             extra rule files or folders, ':'-separated
  GUARDCTL_KUBECTL           the real kubectl (default: first non-shim on PATH)
  GUARDCTL_BROKER            the broker's socket, or https://HOST:PORT: run every
                             command through it
  GUARDCTL_BROKER_CA         https broker: the CA file that signed its certificate
  GUARDCTL_BROKER_TOKEN_FILE https broker: a file holding this agent's token
  GUARDCTL_SESSION           recording session id (invocations share one cast)
  GUARDCTL_APPROVAL_TIMEOUT  seconds to wait for a human (default 300)
  GUARDCTL_FORKSERVER        0: no warm fork server
  GUARDCTL_PREAPPROVED       a one-time grant (set by `guardctl sh`)
  PYTHON_KEYRING_BACKEND     the keyring holding the cluster credential

\b
Exit codes:
  0   allowed (`check`); a run passes kubectl's own code through
  1   an internal error guardctl did not expect (rerun with --traceback)
  2   usage error
  10  `check`: a human must approve
  11  denied by policy (nothing reached the cluster)
  12  approval declined or timed out (nothing reached the cluster)
  13  guardctl could not run the command safely
  130 interrupted (Ctrl-C); 128+N: ended by signal N

\b
Files: $XDG_CONFIG_HOME/guardctl/config.yaml, $XDG_STATE_HOME/guardctl/,
$XDG_CACHE_HOME/guardctl/. Documentation: guardctl's README.md; `guardctl doctor`
checks the set-up and says what to fix; `guardctl completion bash|zsh|fish` prints
shell completions; `guardctl uninstall` lists and removes what guardctl wrote.
"""


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=_EPILOG)
@click.version_option(__version__, prog_name="guardctl")
@click.option("--traceback", is_flag=True, hidden=True, help="Show a traceback on internal errors.")
def cli(traceback: bool) -> None:
    """The gate between an AI agent and kubectl.

    Any command line that does not start with one of the commands below is a kubectl
    invocation: `guardctl get pods -n dev` is decided by policy, then run.
    """


@cli.command()
@click.argument("line", required=False)
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: the decision, its reason, and each command with"
                   " the rules it matched.")
@click.option(
    "--batch", is_flag=True, help='Read JSON Lines ({"line": …}) on stdin, answer one per line.'
)
@_rules_option
def check(line: str | None, as_json: bool, batch: bool, extra_rules: tuple[str, ...]) -> int:
    """Decide LINE (a whole shell line) without running anything.

    Exit 0 allowed, 10 needs a human's approval, 11 denied, 2 usage error.
    """
    from guardctl import app

    if batch == (line is not None):
        raise click.UsageError("give either a LINE or --batch (JSON Lines on stdin)")
    return app.run_check(_env(), app.CheckRequest(line, as_json, extra_rules))


@cli.group()
def rules() -> None:
    """List, explain, lint and test the policy rules."""


@rules.command(name="list")
@_rules_option
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object: the rule files, and each rule's id, action, reason and "
                   "origin.")
def rules_list(extra_rules: tuple[str, ...], as_json: bool) -> int:
    """List every rule in force: id, action and reason."""
    from guardctl import app
    from guardctl.firewall.explain import list_rules, rules_json

    checker = app.Checker.load(_env(), extra_rules)
    if as_json:
        click.echo(rules_json(checker.ruleset))
        return ExitStatus.OK
    click.echo(list_rules(checker.ruleset))
    click.echo(app.rule_files_summary(checker.ruleset), err=True)
    return ExitStatus.OK


@rules.command(name="explain")
@click.argument("line")
@_rules_option
def rules_explain(line: str, extra_rules: tuple[str, ...]) -> int:
    """Show how LINE is read and which rule fired on which words."""
    from guardctl import app
    from guardctl.firewall.explain import explain

    decision = app.Checker.load(_env(), extra_rules).check(line)
    click.echo(explain(decision))
    return ExitStatus.OK


@rules.command(name="lint")
@click.argument("paths", nargs=-1, type=click.Path())
def rules_lint(paths: tuple[str, ...]) -> int:
    """Check rule files (default: every rule file in force) and their sibling .cases files."""
    from guardctl import app

    env = _env()
    result = app.lint(env, paths)
    click.echo(result.summary)
    for failure in result.failures:
        click.echo(f"  {failure}", err=True)
    return ExitStatus.OK if not result.failures else ExitStatus.ERROR


@rules.command(name="test")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@_rules_option
def rules_test(file: str, extra_rules: tuple[str, ...]) -> int:
    """Run FILE's lines through the policy and compare with their expected decisions.

    FILE is YAML (a list of {line, expect, rule}) or a .cases file (`# deny: rule-id`
    above the lines it labels). Exit 0 when every case passes, 1 otherwise.
    """
    from guardctl import app

    env = _env()
    passed, failures = app.test_cases_file(app.Checker.load(env, extra_rules), file)
    for failure in failures:
        click.echo(failure.describe(), err=True)
    click.echo(f"{passed} passed, {len(failures)} failed")
    return ExitStatus.OK if not failures else ExitStatus.ERROR


@cli.command()
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Port on 127.0.0.1 (0: any free port).",
)
@click.option(
    "--kubeconfig-out",
    type=click.Path(dir_okay=False),
    help="Write a kubeconfig with an admin credential here (mode 0600).",
)
@click.option("--verbose", is_flag=True, help="Log every request on stderr.")
def devserver(port: int, kubeconfig_out: str | None, verbose: bool) -> int:
    """Run the embedded in-memory Kubernetes API server in the foreground (Ctrl-C stops it)."""
    from guardctl.devserver import serve

    serve(port, kubeconfig_out, verbose=verbose)
    return ExitStatus.OK


@cli.command()
@click.argument("target", metavar="CAST_OR_SESSION")
@click.option(
    "--speed",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Playback speed factor.",
)
@click.option(
    "--idle-limit",
    type=click.FloatRange(min=0, min_open=True),
    help="Cap pauses between events at this many seconds.",
)
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="Instead of playing: write a web page that plays the cast with the asciinema player "
    "(`-`: to stdout, the only choice through a broker).",
)
@click.option(
    "--player",
    metavar="PATH_OR_URL",
    help="With --html: the asciinema-player npm package's folder, or a URL of one (default: "
    "a pinned version on the jsDelivr CDN).",
)
def replay(
    target: str, speed: float, idle_limit: float | None, html_file: Path | None,
    player: str | None,
) -> int:
    """Play a recorded cast with its timing: a path, a cast's name, or a session (its id,
    the id's first characters, or a Claude Code session id).

    Each command shows as a `$` prompt line. Keys: space pause/resume (paused: position,
    time and current marker on the last row), `.` step while paused, `]` next marker,
    `q` quit. `--html FILE` writes a page for sharing instead (the cast in it, the
    player linked, never copied; `#t=SECONDS` in its address starts it there).
    """
    from guardctl.recording.replay import play, write_page

    if html_file is not None:
        return write_page(target, _env(), html_file, player, speed, idle_limit)
    if player is not None:
        raise click.UsageError("--player goes with --html")
    return play(target, _env(), speed, idle_limit)


@cli.group(invoke_without_command=True)
@click.option(
    "--since", type=click.DateTime(), help="Only invocations started at or after this time (UTC)."
)
@click.option(
    "--decision", type=click.Choice(["allow", "approve", "deny"]), help="Only this decision."
)
@click.option(
    "--session",
    help="Only this session: its id, the id's first characters, or a Claude Code session id.",
)
@click.option("--json", "as_json", is_flag=True, help="JSON Lines, one object per invocation.")
@click.pass_context
def sessions(
    ctx: click.Context,
    since: datetime | None, decision: str | None, session: str | None, as_json: bool,
) -> int:
    """List recorded invocations from the audit log (`sessions prune`: remove old casts)."""
    from datetime import timezone

    from guardctl.recording import audit
    from guardctl.recording import sessions as listing

    if ctx.invoked_subcommand is not None:
        return ExitStatus.OK
    env = _env()
    when = since.replace(tzinfo=timezone.utc) if since and since.tzinfo is None else since
    rows = listing.sessions(audit.log_path(env.state_dir), when, decision, session)
    text = listing.sessions_json(rows) if as_json else listing.format_sessions(rows)
    if text:
        click.echo(text)
    return ExitStatus.OK


@sessions.command(name="prune")
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
@click.option("--max-age", metavar="AGE", help="Instead of retention.max-age (e.g. 30d, 12h).")
@click.option("--max-size", metavar="SIZE", help="Instead of retention.max-size (e.g. 2GiB).")
def sessions_prune(dry_run: bool, max_age: str | None, max_size: str | None) -> int:
    """Remove casts the retention policy no longer keeps, oldest first; never one being
    written, nor one whose records a sink (`ship:`) has not shipped yet, never the audit log
    (it records each cast removed)."""
    from guardctl.recording import prune, retention

    env = _env()
    policy = retention.load_settings(env.config_path).retention.given(max_age, max_size)
    if policy.empty:
        raise click.UsageError(
            f"no retention policy: set retention (max-age, max-size) in {env.config_path}, "
            "or give --max-age or --max-size"
        )
    from guardctl.shipping import shipper

    sinks = shipper.checked_names(env.config_path, env.cache_dir)
    outcome = prune.prune(
        env.state_dir, policy, dry_run=dry_run, keep_session=env.environ.get("GUARDCTL_SESSION"),
        unshipped=shipper.unshipped_casts(env.state_dir, sinks),
    )
    for line in prune.summary(outcome):
        click.echo(line)
    return ExitStatus.OK


@cli.group(name="audit")
def audit_group() -> None:
    """Check the tamper-evident audit log; ship its records off the machine."""


def _s3_url(ctx: click.Context, param: click.Parameter, url: str | None) -> str | None:
    from guardctl.shipping.base import ShipError
    from guardctl.shipping.s3 import parse_url

    try:
        if url is not None:
            parse_url(url)
    except ShipError as exc:
        raise click.BadParameter(str(exc)) from None
    return url


@audit_group.command(name="verify")
@click.option(
    "--against",
    metavar="s3://BUCKET/PREFIX",
    callback=_s3_url,
    help="Also prove from the heads shipped there (ship: s3) that the log was not cut short "
    "or rewritten, and compare the shipped records and casts with the local ones.",
)
def audit_verify(against: str | None) -> int:
    """Verify the audit log's records (key, hash chain), its head and its casts; exit 1 names
    the first problem."""
    from guardctl.recording import audit, recorder, verify

    env = _env()
    log, casts = audit.log_path(env.state_dir), recorder.cast_dir(env.state_dir)
    result = verify.verify(log, casts)
    click.echo(result.message, err=not result.ok)
    if against is None:
        return ExitStatus.OK if result.ok else ExitStatus.ERROR
    from guardctl.errors import UnsafeError
    from guardctl.shipping import against as shipped
    from guardctl.shipping.base import ShipError
    from guardctl.shipping.shipper import sink_settings

    try:
        configured = sink_settings(env.config_path, env.cache_dir).get("s3")
        outcome = shipped.verify_against(against, log, casts, configured)
    except ShipError as exc:
        raise UnsafeError(str(exc)) from None
    for line in outcome.problems or [outcome.summary]:
        click.echo(line, err=bool(outcome.problems))
    return ExitStatus.OK if result.ok and not outcome.problems else ExitStatus.ERROR


@audit_group.command(name="ship")
def audit_ship() -> int:
    """Ship the records not shipped yet to the sinks the config's `ship:` names (for a cron
    job or systemd timer in same-user mode; a broker ships by itself). Exit 13 when a sink
    failed: its records stay in the audit log for the next run."""
    from guardctl.errors import UsageError
    from guardctl.shipping import shipper

    env = _env()
    sinks = shipper.open_sinks(env.config_path, env.cache_dir)
    if not sinks:
        raise UsageError(f"no sinks to ship to: set `ship:` in {env.config_path}, "
                               f"{shipper.EXAMPLE}")
    try:
        outcomes = [shipper.ship_pending(env.state_dir, sink) for sink in sinks]
    finally:
        shipper.close_all(sinks)
    for outcome in outcomes:
        line = shipper.describe(outcome)
        if outcome.error is None:
            click.echo(line)
        else:
            click.echo(f"guardctl: {line}", err=True)
    return ExitStatus.UNSAFE if any(o.error for o in outcomes) else ExitStatus.OK


@cli.command()
@click.option(
    "--for",
    "for_command",
    metavar="'KUBECTL ARGS'",
    help="The kubectl command that printed the text, for command-aware masking.",
)
@click.option(
    "--explain",
    is_flag=True,
    help="Instead of the masked text: which rule masked what, and why each look-alike was "
    "kept (never a masked value).",
)
@click.option(
    "--rules-from",
    "rule_files",
    multiple=True,
    metavar="GITLEAKS.TOML",
    help="Mask with a gitleaks rule file's rules too (each mask names the rule); rules Python "
    "cannot use are listed on stderr. Repeatable.",
)
def mask(for_command: str | None, explain: bool, rule_files: tuple[str, ...]) -> int:
    """Mask secrets in stdin, streaming to stdout."""
    import shlex

    from guardctl.masking import mask as masking
    from guardctl.running.team_rules import detectors_for

    env = _env()
    words = shlex.split(for_command or "")
    if words[:1] == ["kubectl"]:
        words = words[1:]
    found, problems = detectors_for(env, rule_files)
    for problem in problems:
        env.stderr.write(f"guardctl: left out: {problem}\n")
    masker = masking.masker_for(words, found)
    source, sink = env.binary(env.stdin), env.binary(env.stdout)
    if explain:
        from guardctl.masking import explain as explaining

        text = source.read().decode("utf-8", "surrogateescape")
        env.stdout.write(explaining.report(explaining.explain(text, masker, found)))
        return ExitStatus.OK
    while chunk := source.read1(65536) if hasattr(source, "read1") else source.read(65536):
        sink.write(masker.feed(chunk))
        sink.flush()
    sink.write(masker.flush())
    sink.flush()
    return ExitStatus.OK


@cli.group(invoke_without_command=True)
@click.pass_context
def approvals(ctx: click.Context) -> int:
    """The human's side: a live view of pending requests (a approve, w window, d deny, q quit).

    Scripts and other UIs use the commands below; the first answer to a request is final.
    """
    if ctx.invoked_subcommand is not None:
        return ExitStatus.OK
    from guardctl.approvals.console import run_console

    return run_console(_env())


@approvals.command(name="list")
@click.option("--json", "as_json", is_flag=True,
              help="JSON Lines: one object per waiting request (id, line, rules, namespaces, "
                   "diff, manifest, window_scopes, expires, …).")
def approvals_list(as_json: bool) -> int:
    """List the requests waiting for a human, oldest first."""
    from guardctl.approvals.scripted import list_requests

    return list_requests(_env(), as_json)


@approvals.command(name="approve")
@click.argument("request_id", metavar="ID")
@click.option("--window", metavar="DURATION",
              help="Also approve the request's rules in its namespaces on its cluster for this "
                   "long (10m, 2h; at most 8h).")
def approvals_approve(request_id: str, window: str | None) -> int:
    """Approve request ID (its id from `list`, or a unique prefix of at least 4 characters).

    Exit 0 approved; 2 malformed ID or DURATION; 13 not answered (no such request waits, it
    was answered already, or it cannot be covered by a window).
    """
    from guardctl.approvals.scripted import answer_request

    return answer_request(_env(), request_id, approved=True, window=window)


@approvals.command(name="deny")
@click.argument("request_id", metavar="ID")
@click.option("--reason", required=True, help="Why: the agent is told.")
def approvals_deny(request_id: str, reason: str) -> int:
    """Decline request ID with a reason. Exit codes as for `approve`."""
    from guardctl.approvals.scripted import answer_request

    return answer_request(_env(), request_id, approved=False, reason=reason)


@approvals.command(name="sign")
@click.option("--request", "payload", required=True, type=click.File("rb"), metavar="FILE",
              help="The webhook's JSON payload (its `data`, or the whole body); - for stdin.")
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False),
              help="Your Ed25519 private key (PEM or OpenSSH, unencrypted).")
@click.option("--approve/--deny", "approved", default=None, required=True,
              help="The answer.")
@click.option("--reason", default="", help="Why (needed with --deny): the agent is told.")
@click.option("--window", metavar="DURATION",
              help="With --approve: also approve the request's rules in its namespaces for "
                   "this long (10m, 2h; at most 8h).")
@click.option("--post", metavar="URL",
              help="Send the answer to the broker's answers listener (http[s]://HOST:PORT).")
@click.option("--ca", type=click.Path(dir_okay=False),
              help="For --post: the CA that signed the listener's certificate.")
def approvals_sign(payload: IO[bytes], key_file: str, approved: bool, reason: str,
                   window: str | None, post: str | None, ca: str | None) -> int:
    """Make a signed answer to a request the approval webhook posted, and print it (JSON).

    The answer counts only when your public key is registered with the broker (`approvals
    keys add`) and the request still waits as it was shown. Exit 0 signed (and with --post,
    taken); 2 bad input; 13 expired, changed on its way, or refused by the broker.
    """
    from guardctl.approvals.signed import read_payload, sign_command

    data = read_payload(payload, payload.name)
    return sign_command(_env(), data, Path(key_file), approved=approved, reason=reason,
                        window=window, post=post, ca=ca)


@approvals.group(name="keys")
def approvals_keys() -> None:
    """The approver keys whose signed answers count (an answer from off the machine)."""


@approvals_keys.command(name="add")
@click.argument("name")
@click.argument("public_key", metavar="PUBLIC_KEY_FILE", type=click.Path(dir_okay=False))
def approvals_keys_add(name: str, public_key: str) -> int:
    """Register an Ed25519 public key (PEM or OpenSSH) as approver NAME (`key:NAME`)."""
    from guardctl.approvals.signed import add_key

    click.echo(add_key(_env().state_dir, name, Path(public_key)))
    return ExitStatus.OK


@approvals_keys.command(name="list")
def approvals_keys_list() -> int:
    """The registered approver keys: name and public key."""
    from guardctl.approvals.signed import list_keys

    for line in list_keys(_env().state_dir):
        click.echo(line)
    return ExitStatus.OK


@approvals_keys.command(name="remove")
@click.argument("name")
def approvals_keys_remove(name: str) -> int:
    """Forget approver key NAME: its answers no longer count."""
    from guardctl.approvals.signed import remove_key

    click.echo(remove_key(_env().state_dir, name))
    return ExitStatus.OK


@cli.command(name="sh")
@click.option(
    "-c", "line", required=True, metavar="LINE", help="The shell line to decide, then run."
)
def shell_command(line: str) -> int:
    """Shell firewall: decide the whole LINE, then run it with bash; every kubectl it starts
    goes through guardctl again at run time."""
    from guardctl.agents.shell import run_shell

    return run_shell(_env(), line)


@cli.group()
def shim() -> None:
    """The `kubectl` shim that sends an agent's kubectl through guardctl."""


@shim.command(name="install")
@click.argument("folder", type=click.Path(file_okay=False))
def shim_install(folder: str) -> int:
    """Write FOLDER/kubectl; put FOLDER first on the agent's PATH."""
    from guardctl.agents.shim import install

    install(_env(), folder)
    return ExitStatus.OK


@cli.group()
def hook() -> None:
    """Hooks for agent tools."""


@hook.command(name="claude-code")
def hook_claude_code() -> int:
    """PreToolUse hook for Claude Code's Bash tool: reads the hook JSON on stdin, answers JSON."""
    from guardctl.agents.hook import claude_code

    env = _env()
    out, code = claude_code(env, env.stdin.read())
    env.stdout.write(out)
    return code


@cli.command()
def mcp() -> int:
    """An MCP server on stdio with `kubectl` and `check` tools (same path as the CLI).

    Needs the `mcp` extra: pip install 'guardctl[mcp]'."""
    from guardctl.errors import UnsafeError

    try:
        from guardctl.agents.mcp import serve
    except ModuleNotFoundError as err:
        if err.name is None or not err.name.startswith("mcp"):
            raise
        raise UnsafeError(
            "`guardctl mcp` needs the MCP SDK, which is not installed: "
            "pip install 'guardctl[mcp]' (or pipx inject guardctl mcp)"
        ) from None
    return serve(_env())


@cli.command()
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object: each finding's level, topic and message, and the counts.")
def doctor(as_json: bool) -> int:
    """Check kubectl, keyring, credentials, rules, state folder and shim; say what to fix."""
    from guardctl import doctor as diagnosis

    return diagnosis.run(_env(), as_json=as_json)


@cli.command()
@click.option("--no-replay", is_flag=True, help="Skip replaying the recording at the end.")
@click.option("--fast", is_flag=True, help="No pauses between the steps.")
def demo(no_replay: bool, fast: bool) -> int:
    """Show guardctl on an embedded demo cluster: allow, deny, approve, mask, replay."""
    from guardctl import demo as tour

    return tour.run(_env(), replay=not no_replay, fast=fast)


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> int:
    """Print the completion script for SHELL, e.g. `source <(guardctl completion bash)`.

    kubectl's words complete through guardctl's own credentials, never your kubeconfig."""
    from guardctl.bundled import completion_script

    click.echo(completion_script(shell), nl=False)
    return ExitStatus.OK


@cli.command(name="complete-kubectl", hidden=True, context_settings={
    "ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("words", nargs=-1, type=click.UNPROCESSED)
def complete_kubectl(words: tuple[str, ...]) -> int:
    """For the completion scripts: candidates for the last of WORDS (kubectl's words), in
    `kubectl __complete`'s format."""
    from guardctl.agents.complete import complete

    env = _env()
    env.stdout.write(complete(env, list(words[:-1]), words[-1] if words else ""))
    return ExitStatus.OK


@cli.group()
def creds() -> None:
    """The cluster credential in the OS keyring, and the agent's short-lived tokens."""


@creds.command(name="import")
@click.option(
    "--kubeconfig", type=click.Path(dir_okay=False), help="Default: $KUBECONFIG or ~/.kube/config."
)
@click.option(
    "--context",
    help="Default: the kubeconfig's current context. A context not yet imported is added "
    "beside those that are (the first is the default); one imported before is replaced.",
)
@click.option(
    "--service-account",
    required=True,
    metavar="NS/NAME",
    help="The agent's ServiceAccount; tokens are minted for it.",
)
@click.option("--ttl", default="1h", show_default=True, help="Life of each minted token (>= 10m).")
@click.option("--allow-plaintext", is_flag=True,
              help="Accept a keyring that keeps the credential unencrypted in a file "
                   "(keyrings.alt's PlaintextKeyring) without being asked.")
def creds_import(
    kubeconfig: str | None, context: str | None, service_account: str, ttl: str,
    allow_plaintext: bool,
) -> int:
    """Move a context's credential into the keyring and record the cluster and ServiceAccount."""
    from guardctl.running import creds as credentials

    env = _env()
    if not (allow_plaintext or credentials.plaintext_chosen(env)) and not _plaintext_accepted(
        credentials.plaintext_keyring()
    ):
        return ExitStatus.ERROR
    config = credentials.import_credentials(env, kubeconfig, context, service_account, ttl)
    for line in credentials.import_advice(config, kubeconfig, env):
        click.echo(line)
    return ExitStatus.OK


def _confirmed(plan: list[str], question: str, yes: bool) -> bool:
    """Show `plan`, then ask `question` on the terminal unless `yes`. With no terminal to
    ask on and no `--yes`, refuse (UsageError, exit 2) rather than guess."""
    from guardctl.errors import UsageError

    env = _env()
    for line in plan:
        click.echo(line)
    if yes:
        return True
    if not env.stdin.isatty():
        raise UsageError(f"{question.rstrip('?')}: no terminal to confirm on; rerun with --yes")
    if click.confirm(question, default=False):
        return True
    click.echo("nothing was changed", err=True)
    return False


_yes_option = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")


@creds.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array, an object per context.")
def creds_list(as_json: bool) -> int:
    """Every managed context: default marker, namespace, server, ServiceAccount, keyring
    backend and token expiry (never a secret). --json: one array of objects."""
    import json

    from guardctl.running import creds as credentials

    rows = credentials.context_rows(_env())
    if as_json:
        click.echo(json.dumps(rows, indent=1))
    elif rows:
        click.echo(credentials.format_rows(rows))
    else:
        click.echo("no managed contexts: run `guardctl creds import --service-account NS/NAME`",
                   err=True)
    return ExitStatus.OK


@creds.command(name="remove")
@click.argument("context")
@_yes_option
def creds_remove(context: str, yes: bool) -> int:
    """Remove CONTEXT: its config entry, its credential and cached tokens in the keyring.

    Removing the default context makes the next one the default (the plan says which)."""
    from guardctl.running import creds as credentials

    env = _env()
    _, plan = credentials.removal_plan(env, context)
    if not _confirmed(["guardctl will remove", *plan], f"Remove context {context!r}?", yes):
        return ExitStatus.ERROR
    default = credentials.remove_context(env, context)
    click.echo(f"removed context {context!r}"
               + (f"; the default context is {default.context!r}" if default else
                  "; no context is left"))
    return ExitStatus.OK


@cli.command(name="ns")
@click.argument("name", required=False)
@click.option("--context", help="The managed context (default: the default one).")
def ns_command(name: str | None, context: str | None) -> int:
    """Print the default namespace, or with NAME switch to it (recorded in the audit log).

    Commands without -n then run in it; kubectl's -n still wins."""
    from guardctl.running import namespace

    env = _env()
    if name is None:
        click.echo(namespace.current(env, context))
        return ExitStatus.OK
    changed = namespace.switch(env, context, name)
    click.echo(f'default namespace of context "{changed.context}" is now "{name}"')
    return ExitStatus.OK


def _plaintext_accepted(plaintext: str | None) -> bool:
    """True unless the keyring keeps secrets unencrypted and the person, asked on the
    terminal, says no; with no terminal to ask on, UnsafeError (exit 13) with the fix."""
    from guardctl.errors import UnsafeError

    if plaintext is None:
        return True
    what = (f"the only keyring here is {plaintext}, which keeps the credential unencrypted: "
            "whoever can read that file has it")
    if not _env().stdin.isatty():
        raise UnsafeError(f"{what}; rerun with --allow-plaintext to accept that, or install a "
                          "system keyring (e.g. gnome-keyring) and import again")
    click.echo(f"guardctl: {what}.", err=True)
    if click.confirm("Store the credential there anyway?", default=False):
        return True
    click.echo("nothing was imported", err=True)
    return False


@creds.command(name="status")
def creds_status() -> int:
    """Context, ServiceAccount, keyring backend and token expiry (never the token)."""
    from guardctl.running import creds as credentials

    for line in credentials.status(_env()):
        click.echo(line)
    return ExitStatus.OK


@cli.command()
@_yes_option
@click.option("--keep-state", is_flag=True,
              help="Keep the state folder: audit log, casts, approvals.")
def uninstall(yes: bool, keep_state: bool) -> int:
    """Remove what guardctl wrote for this account: shims, keyring entries and cached tokens,
    config, cache, runtime folder and state. Lists it all and asks first."""
    from guardctl import uninstall as removal

    plan = removal.plan(_env(), keep_state)
    lines = ["guardctl will remove", *(f"  {item.what}" for item in plan.items)]
    if not plan.items:
        lines = ["guardctl has nothing of its own to remove here"]
    lines += list(plan.kept)
    if not _confirmed(lines, "Remove all of the above?", yes or not plan.items):
        return ExitStatus.ERROR
    failures = removal.run(plan)
    for failure in failures:
        click.echo(f"guardctl: {failure}", err=True)
    if failures:
        return ExitStatus.UNSAFE
    if plan.items:
        click.echo("removed")
    return ExitStatus.OK


@cli.group()
def broker() -> None:
    """The broker: a daemon under another account that alone holds credentials, rules,
    approvals and records, and runs kubectl for agents (see README, "The broker")."""


@broker.command(name="serve")
@click.option(
    "--socket", "socket_path", type=click.Path(dir_okay=False),
    help="The Unix socket to listen on (its folder must be the broker account's).",
)
@click.option("--agent-user", multiple=True, metavar="USER", help="An agent account (repeatable).")
@click.option(
    "--agent-group", multiple=True, metavar="GROUP", help="A group of agent accounts (repeatable)."
)
@click.option(
    "--approver-user", multiple=True, metavar="USER",
    help="Another account that may approve, besides the broker's own (repeatable).",
)
@click.option(
    "--listen", metavar="HOST:PORT",
    help="Also (or only) serve agents over TCP with TLS, each by its token (`broker token`).",
)
@click.option(
    "--tls-cert", type=click.Path(dir_okay=False), help="For --listen: certificate chain (PEM)."
)
@click.option(
    "--tls-key", type=click.Path(dir_okay=False), help="For --listen: its private key (PEM)."
)
@click.option(
    "--agent-service-account", multiple=True, metavar="NS/NAME",
    help="For --listen: a ServiceAccount whose own tokens (audience guardctl-broker) make it "
    "an agent, checked by a TokenReview (repeatable).",
)
@click.option(
    "--answers-listen", metavar="HOST:PORT",
    help="Take signed answers to approval requests (POST /v1/approvals/ID) here; HTTPS with "
    "--tls-cert/--tls-key, else HTTP.",
)
def broker_serve(
    socket_path: str | None, agent_user: tuple[str, ...], agent_group: tuple[str, ...],
    approver_user: tuple[str, ...], listen: str | None, tls_cert: str | None,
    tls_key: str | None, agent_service_account: tuple[str, ...], answers_listen: str | None,
) -> int:
    """Serve agents on SOCKET and/or HOST:PORT in the foreground, as this account (Ctrl-C or
    SIGTERM stops)."""
    import sys

    from guardctl.broker import answers as answers_module
    from guardctl.broker import remote, server

    if socket_path is None and listen is None:
        raise click.UsageError("give --socket PATH, --listen HOST:PORT, or both")
    if bool(tls_cert) != bool(tls_key) or (tls_cert and not (listen or answers_listen)):
        raise click.UsageError("--tls-cert and --tls-key go together, with --listen or "
                               "--answers-listen")
    access = server.make_access(agent_user, agent_group, approver_user)
    if (listen or agent_service_account) and not (listen and tls_cert):
        raise click.UsageError("--listen needs --tls-cert and --tls-key (and "
                               "--agent-service-account needs --listen)")
    where = remote.parse_listen(listen) if listen else None
    answers_where = _answers_address(answers_listen) if answers_listen else None
    tls = remote.server_context(tls_cert, tls_key) if tls_cert and tls_key else None
    tcp = _tcp_settings(where, tls, agent_service_account) if where and tls else None
    answers = (answers_module.Settings(*answers_where, tls, _env().state_dir)
               if answers_where else None)
    path = Path(socket_path).absolute() if socket_path is not None else None
    return server.serve(path, access, sys.stderr, run, tcp, answers)


def _tcp_settings(where: tuple[str, int], tls: ssl.SSLContext,
                  service_accounts: tuple[str, ...]) -> Tcp:
    """`remote.Tcp` for --listen with its TLS context and the ServiceAccounts it serves."""
    from guardctl.broker import remote, tokenreview, tokens
    from guardctl.config import split_service_account

    accounts = frozenset(tokenreview.username(*split_service_account(text))
                         for text in service_accounts)
    return remote.Tcp(*where, tls, tokens.store_path(_env().state_dir), accounts)


def _answers_address(listen: str) -> tuple[str, int]:
    from guardctl.broker import remote
    from guardctl.errors import UsageError

    try:
        return remote.parse_listen(listen)
    except UsageError:
        raise click.UsageError(f"--answers-listen {listen!r} is not HOST:PORT "
                               "(e.g. 127.0.0.1:8444)") from None


@broker.group(name="token")
def broker_token() -> None:
    """The tokens that name the agents a broker serves over TCP (shown once, stored hashed)."""


@broker_token.command(name="create")
@click.option("--agent", "agent", required=True, metavar="NAME", help="The agent's name.")
@click.option("--ttl", default="24h", show_default=True, help="Lifetime: 24h, 7d, 90m, ...")
def broker_token_create(agent: str, ttl: str) -> int:
    """Make a token for agent NAME (replacing its old one) and print it, once."""
    from guardctl.broker import tokens

    seconds = tokens.duration_seconds(ttl)
    click.echo(tokens.create(tokens.store_path(_env().state_dir), agent, seconds))
    return ExitStatus.OK


@broker_token.command(name="list")
def broker_token_list() -> int:
    """The agents that have a token, and when each expires (never a token)."""
    from guardctl.broker import tokens

    for entry in tokens.load(tokens.store_path(_env().state_dir)):
        click.echo(tokens.describe(entry))
    return ExitStatus.OK


@broker_token.command(name="revoke")
@click.argument("agent", metavar="NAME")
def broker_token_revoke(agent: str) -> int:
    """Forget agent NAME's token: it is refused, and what it runs ends, within seconds."""
    from guardctl.broker import tokens

    if not tokens.revoke(tokens.store_path(_env().state_dir), agent):
        click.echo(f"guardctl: no agent named {agent!r} has a token", err=True)
        return ExitStatus.USAGE
    click.echo(f"revoked the token of {agent}")
    return ExitStatus.OK


@broker.command(name="status")
def broker_status() -> int:
    """Whether a broker is configured and reachable, and in which role it sees you."""
    # with a broker configured, the client sends this to the broker, which answers
    click.echo(
        "no broker is configured: guardctl runs in same-user mode, where its guarantees are "
        "advisory (an agent running as this user can read this user's files). Set "
        "GUARDCTL_BROKER=SOCKET, or `broker: SOCKET` in guardctl's config file, to use one."
    )
    return ExitStatus.ERROR


# ------------------------------------------------------------------ click's errors


def run(args: Sequence[str], env: Environment | None = None) -> int:
    """Run one of guardctl's own commands; click's usage errors become exit 2 with its message.

    `env` is the Environment the commands use (default: this process's). Other errors reach
    the boundary in `guardctl.main`.
    """
    try:
        result = cli.main(args=list(args), prog_name="guardctl", standalone_mode=False, obj=env)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return ExitStatus.USAGE if isinstance(exc, click.UsageError) else exc.exit_code
    except click.Abort:
        click.echo("guardctl: interrupted", err=True)
        return ExitStatus.INTERRUPTED
    return int(result) if isinstance(result, int) else ExitStatus.OK
