"""The vocabulary every layer shares: what a line holds, what a kubectl call means, what was
decided.

All immutable records, stdlib only: `NamedTuple`, whose classes are created at import far
faster than dataclasses, which matters to a process that starts for every agent command.
The parser produces `ParsedLine`, the normalizer turns each kubectl `SimpleCommand` into a
`KubectlCall`, the manifest inspector adds a `ManifestReport`, and the policy returns a
`Decision`.
"""

from collections.abc import Mapping
from enum import Enum
from types import MappingProxyType
from typing import NamedTuple


class Action(str, Enum):
    """What policy does with a command. Declared from the mildest to the strictest."""

    ALLOW = "allow"
    APPROVE = "approve"
    DENY = "deny"

    @property
    def strictness(self) -> int:
        return _STRICTNESS[self]


_STRICTNESS = {Action.ALLOW: 0, Action.APPROVE: 1, Action.DENY: 2}


def strictest(
    actions: list[Action] | tuple[Action, ...], default: Action = Action.ALLOW
) -> Action:
    """The strictest of `actions` (deny > approve > allow); `default` when there are none."""
    return max(actions, key=lambda a: a.strictness, default=default)


# --------------------------------------------------------------------------- parsing


class SimpleCommand(NamedTuple):
    """One program invocation found anywhere in a shell line, wrappers already unwrapped.

    `argv[0]` is the program as written after quote removal (`kube""ctl` -> `kubectl`,
    `/usr/bin/kubectl` stays a path). Words whose value the shell would only know at run
    time (parameter expansion, command substitution, arithmetic, globs in a program name)
    keep their source text and their index is in `dynamic`.
    """

    # empty for a line part that only assigns variables (`KUBECONFIG=/x`): later commands of
    # the agent's shell may inherit them, so rules see the assignments
    argv: tuple[str, ...]
    # indices into argv whose value is not known statically
    dynamic: frozenset[int] = frozenset()
    # indices into argv whose leading `~` the shell expands (unquoted): `-f ~/x.yaml` reads
    # the home folder's file, `-f '~/x.yaml'` a folder named `~` (kubectl expands nothing)
    tilde: frozenset[int] = frozenset()
    # true when more words are appended at run time (xargs without -I)
    open_tail: bool = False
    # NAME=value prefixes, including those given through `env`
    assignments: tuple[tuple[str, str], ...] = ()
    # where stdin comes from: "inherit" | "pipe" | "heredoc" | "herestring" | "file", or
    # "kustomize" for a kubectl piped from a plain `kustomize build DIR` (the policy's mark)
    stdin_from: str = "inherit"
    # the heredoc or here-string body when stdin_from is "heredoc"/"herestring"; the path for
    # "file"; DIR for "kustomize"
    stdin: str | None = None
    # true when that body holds expansions ($VAR, $(...)) the shell only fills in at run time
    stdin_dynamic: bool = False
    # files the shell opens for writing for this command (>, >>, &>, >|)
    writes: tuple[str, ...] = ()
    # the wrappers it was found under, outermost first: "sudo", "bash -c", "$(...)", "xargs", ...
    via: tuple[str, ...] = ()

    @property
    def program(self) -> str:
        """The program's base name (`/usr/bin/kubectl` -> `kubectl`)."""
        return self.argv[0].rsplit("/", 1)[-1] if self.argv else ""


class ParsedLine(NamedTuple):
    """Every simple command of one shell line, and what the parser could not understand."""

    line: str
    commands: tuple[SimpleCommand, ...]
    # line-level problems (unparseable syntax, eval of dynamic text, ...); any problem means
    # the line is never allowed statically
    problems: tuple[str, ...] = ()


# --------------------------------------------------------------------------- normalizing


class ResourceRef(NamedTuple):
    """A resource a kubectl call names, resolved through the resource table."""

    resource: str  # plural name, e.g. "namespaces", "deployments"
    group: str  # "" for the core group, e.g. "apps", "rbac.authorization.k8s.io"
    kind: str  # e.g. "Namespace"; "" when the resource is unknown to the table
    namespaced: bool = True
    name: str | None = None  # set for TYPE/NAME and for names that follow a single type
    subresource: str | None = None  # e.g. "token" for create token, "log" for --raw .../log

    @property
    def qualified(self) -> str:
        """`resource.group` (`deployments.apps`), or the bare name for the core group."""
        return f"{self.resource}.{self.group}" if self.group else self.resource


NO_FLAGS: Mapping[str, tuple[str, ...]] = MappingProxyType({})


class KubectlCall(NamedTuple):
    """One kubectl invocation, normalized.

    `verb` is the command path kubectl itself uses, words joined by a space: "get",
    "rollout restart", "create secret generic", "auth can-i", "config view", "" when the
    line names no verb. `flags` maps canonical long flag names (no dashes; `-n` is
    "namespace", `-o` is "output", `-A` is "all-namespaces") to every value given, in
    order; boolean flags hold "true"/"false".
    """

    argv: tuple[str, ...]
    verb: str
    resources: tuple[ResourceRef, ...] = ()
    names: tuple[str, ...] = ()  # names not attached to a TYPE/NAME ref
    namespace: str | None = None  # None: the context's default namespace
    all_namespaces: bool = False
    # read-only (the normalizer hands over a MappingProxyType)
    flags: Mapping[str, tuple[str, ...]] = NO_FLAGS
    # the flags above that are kubectl's global ones: `--user` of `create rolebinding` names a
    # subject, the global `--user` picks a kubeconfig credential
    global_flags: frozenset[str] = frozenset()
    args: tuple[str, ...] = ()  # positional words after the verb, as given
    command: tuple[str, ...] = ()  # words after `--` (exec, run, debug)
    dry_run: bool = False  # true only for --dry-run=client|server (and bare --dry-run)
    # what could not be understood: a dynamic verb/resource/flag, an unknown flag, ...
    problems: tuple[str, ...] = ()
    # where each flag value came from: (flag name, index of the word among kubectl's
    # arguments that ends with the value); bare boolean flags have none
    flag_words: tuple[tuple[str, int], ...] = ()
    arg_words: tuple[int, ...] = ()  # the index of each word in `args`

    def flag(self, name: str) -> str | None:
        """The last value given for a flag (kubectl's own rule for repeated flags)."""
        values = self.flags.get(name)
        return values[-1] if values else None

    def has_flag(self, name: str) -> bool:
        return name in self.flags


# --------------------------------------------------------------------------- manifests


class ManifestObject(NamedTuple):
    """One object found in a manifest the line carries (file, heredoc, --overrides, patch)."""

    kind: str
    api_version: str = ""
    name: str | None = None
    namespace: str | None = None


class Risk(NamedTuple):
    """A dangerous property of a manifest or flag.

    e.g. Risk("privileged", "Deployment/web: container app")
    """

    name: str  # one of manifests.RISKS
    detail: str = ""


class ManifestReport(NamedTuple):
    objects: tuple[ManifestObject, ...] = ()
    risks: tuple[Risk, ...] = ()
    # sources guardctl could not read or render: "-f https://...", "-f - from a pipe", "-k dir"
    unseen: tuple[str, ...] = ()


# --------------------------------------------------------------------------- deciding


class RuleHit(NamedTuple):
    id: str
    action: Action
    reason: str
    # the normalized words the rule matched on, for `rules explain`
    matched: tuple[str, ...] = ()


class CommandDecision(NamedTuple):
    argv: tuple[str, ...]
    action: Action
    hits: tuple[RuleHit, ...] = ()
    problems: tuple[str, ...] = ()
    call: KubectlCall | None = None  # set for kubectl commands
    report: ManifestReport | None = None


class Decision(NamedTuple):
    action: Action
    reason: str
    commands: tuple[CommandDecision, ...] = ()
    problems: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        """The `check --json` object of DESIGN.md."""
        return {
            "decision": self.action.value,
            "reason": self.reason,
            "commands": [
                {
                    "argv": list(c.argv),
                    "decision": c.action.value,
                    "rules": [
                        {"id": h.id, "action": h.action.value, "reason": h.reason} for h in c.hits
                    ],
                    **({"problems": list(c.problems)} if c.problems else {}),
                }
                for c in self.commands
            ],
            **({"problems": list(self.problems)} if self.problems else {}),
        }
