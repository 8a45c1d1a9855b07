"""Completing kubectl's words for the shell scripts (`guardctl complete-kubectl WORDS… CUR`),
through guardctl's own credentials, never the person's kubeconfig.

The answer is in the format of kubectl's own `__complete` (cobra's): one candidate per line,
then `:DIRECTIVE`. What it offers, by the position of the word being completed:

- a namespace (after `-n`/`--namespace`), a resource name (after `get TYPE`, `describe
  TYPE`, …, or `TYPE/`), a pod (after `logs`, `exec`, …): the names a `kubectl get TYPE -o
  name` lists, run the way every guardctl command runs (decided by the policy, recorded,
  with a minted token, output masked). Only when the policy allows it without a human: a
  TAB never waits for an approval, and a denied or flagged listing offers nothing;
- a resource type: from guardctl's resource table (real discovery documents), no request;
- anything else (verbs, flags, flag values): the real kubectl's `__complete`, with a
  kubeconfig that holds no credential and points at no cluster (127.0.0.1 port 1), so it
  answers what it knows by itself and reaches nobody.
"""

from __future__ import annotations

import io
import subprocess

from guardctl.env import Environment
from guardctl.model import Action, SimpleCommand

# cobra's directives: 4 no file completion
NO_FILES = 4
# verbs whose words after the verb are TYPE then NAMEs (or TYPE/NAME)
TYPE_VERBS = frozenset({
    "get", "describe", "delete", "edit", "label", "annotate", "patch", "scale", "autoscale",
    "expose", "rollout status", "rollout restart", "rollout history", "rollout undo",
    "rollout pause", "rollout resume", "set image", "set env", "set resources", "explain",
    "wait", "cordon", "uncordon", "drain", "taint",
})
# verbs whose first word is a pod (or TYPE/NAME)
POD_VERBS = frozenset({"logs", "exec", "attach", "port-forward"})
# verbs that take nodes only
NODE_VERBS = frozenset({"cordon", "uncordon", "drain", "taint"})
STATIC_TIMEOUT = 10
# a kubeconfig that reaches no cluster: kubectl completes verbs and flags from itself
NOWHERE = ("apiVersion: v1\nkind: Config\ncurrent-context: none\nclusters:\n- name: none\n"
           "  cluster: {server: 'https://127.0.0.1:1'}\ncontexts:\n- name: none\n"
           "  context: {cluster: none, user: none}\nusers:\n- name: none\n  user: {}\n")


def complete(env: Environment, words: list[str], cur: str) -> str:
    """Candidates for `cur` after kubectl's `words`, in `kubectl __complete`'s format."""
    found = _candidates(env, words, cur)
    if found is None:
        return _static(env, words, cur)
    # as kubectl does: only those that start with the word (the value, after `--flag=`)
    typed = cur.partition("=")[2] if cur.startswith("-") else cur
    return "".join(f"{c}\n" for c in found if c.startswith(typed)) + f":{NO_FILES}\n"


def _candidates(env: Environment, words: list[str], cur: str) -> list[str] | None:
    """What guardctl offers itself; None where kubectl's own answer serves."""
    from guardctl.firewall.normalize import normalize

    call = normalize(SimpleCommand(argv=("kubectl", *words)))
    context = call.flag("context") if "context" in call.global_flags else None
    namespace = None if call.all_namespaces else call.namespace
    if words[-1:] in (["-n"], ["--namespace"]) or cur.startswith(("--namespace=", "-n=")):
        # as kubectl answers `--output=j`: the value alone, the script keeps the flag
        return _names(env, "namespaces", None, context)
    if cur.startswith("-") or not call.verb:
        return None
    given = call.args
    if call.verb in POD_VERBS and not given and "/" not in cur:
        return _names(env, "pods", namespace, context)
    if call.verb in NODE_VERBS:
        return _names(env, "nodes", None, context)
    if call.verb not in TYPE_VERBS and call.verb not in POD_VERBS:
        return None
    if "/" in cur:
        kind = cur.partition("/")[0]
        return [f"{kind}/{n}" for n in _names(env, kind, namespace, context)]
    if not given and call.verb in TYPE_VERBS:
        return _types()
    if len(given) >= 1 and "/" not in given[0] and "," not in given[0]:
        return _names(env, given[0], namespace, context)
    return []



def _types() -> list[str]:
    from guardctl.firewall.resources import all_resources

    return sorted({info.resource for info in all_resources()})


def _names(env: Environment, kind: str, namespace: str | None,
           context: str | None) -> list[str]:
    """The names `kubectl get KIND -o name` lists, run through guardctl when the policy
    allows it without a human; none otherwise (or when it fails)."""
    from guardctl.app import Checker
    from guardctl.model import ParsedLine
    from guardctl.running.invoke import Invocation, run_kubectl

    argv = ["get", kind, "-o", "name"]
    argv += ["--namespace", namespace] if namespace else []
    argv += ["--context", context] if context else []
    invocation = Invocation(tuple(argv), None, "pipe")
    checker = Checker.load(env, expand=False)
    decision = checker.decide(ParsedLine(line=invocation.line, commands=(invocation.command(),)))
    if decision.action is not Action.ALLOW:
        return []
    printed = io.BytesIO()
    out = io.TextIOWrapper(printed, encoding="utf-8")
    quiet = Environment(stdin=io.StringIO(), stdout=out, stderr=io.StringIO(),
                        environ=env.environ, home=env.home)
    try:
        code = run_kubectl(quiet, argv)
    except Exception:  # noqa: BLE001 - a TAB shows nothing rather than a traceback
        return []
    out.flush()
    if code != 0:
        return []
    text = printed.getvalue().decode("utf-8", "replace")
    return [line.partition("/")[2] or line for line in text.split() if line]


def _static(env: Environment, words: list[str], cur: str) -> str:
    """The real kubectl's own answer, from a kubeconfig that reaches no cluster."""
    from guardctl.atomic import write_atomic
    from guardctl.running import kubectl_env
    from guardctl.running.runner import find_kubectl

    home = kubectl_env.prepare(env.cache_dir)
    nowhere = home / "complete.kubeconfig"
    if not nowhere.is_file():
        write_atomic(nowhere, NOWHERE)
    try:
        proc = subprocess.run(
            [find_kubectl(env), "__complete", *words, cur],
            env=kubectl_env.environ(home, nowhere, home), stdin=subprocess.DEVNULL,
            capture_output=True, timeout=STATIC_TIMEOUT, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return f":{NO_FILES}\n"
    return proc.stdout.decode("utf-8", "replace")
