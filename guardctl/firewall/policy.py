"""Decide a parsed line: allow, approve or deny.

Precedence, in this order:
1. Every simple command of the line is decided on its own; the line gets the strictest
   decision of its commands (deny > approve > allow).
2. A command gets the strictest action of all rules that match it; rules never loosen
   each other (a user loosens a default rule by redefining or disabling its id).
3. Whatever guardctl did not understand (parse problems, words only known at run time,
   unknown flags, resource types or commands, manifests it cannot see) raises the
   decision to at least `approve`, whatever the rules say: never a silent allow.
4. With no matching rule and nothing misunderstood, a command is allowed.
"""

import posixpath
import re
from collections.abc import Callable, Iterable
from fnmatch import fnmatchcase, translate
from functools import lru_cache
from itertools import compress
from typing import Any, NamedTuple, TypeVar

from guardctl.firewall import files, manifests
from guardctl.firewall.kept import MAX_CHARS, Kept
from guardctl.firewall.normalize import kubectl_args, normalize
from guardctl.firewall.rules import FlagCondition, Match, Rule, RuleSet
from guardctl.firewall.wrappers import unseen_code
from guardctl.model import (
    Action,
    CommandDecision,
    Decision,
    KubectlCall,
    ManifestReport,
    ParsedLine,
    RuleHit,
    SimpleCommand,
    strictest,
)


class PolicyContext(NamedTuple):
    """Facts about this installation that rules refer to by placeholder.

    `@protected` in a glob stands for each of `protected_paths` (guardctl's state, config,
    rules and shim folders), `@cluster` for each of `cluster_hosts` (the managed clusters'
    API server addresses), `@context` for each of `contexts` (the kubeconfig contexts
    guardctl holds credentials for).
    """

    protected_paths: tuple[str, ...] = ()
    cluster_hosts: tuple[str, ...] = ()
    contexts: tuple[str, ...] = ()
    # kubectl plugins the user listed (`plugins:` in the config): decided as commands
    plugins: frozenset[str] = frozenset()
    # (context, namespace): the namespace a command without `-n` runs in, by the managed
    # context it chooses ("": the default one), as `guardctl ns` set it
    default_namespaces: tuple[tuple[str, str], ...] = ()


NO_CONTEXT = PolicyContext()
# every context made by `context_of`, by value
_CONTEXTS: dict[PolicyContext, PolicyContext] = {}


def context_of(**facts: Any) -> PolicyContext:
    """The one PolicyContext with these facts: what the policy derives from a context is kept
    by the context's identity, so a context equal to one seen before (the next command of a
    fork server's worker, made from the same environment) finds that work done."""
    made = PolicyContext(**facts)
    if len(_CONTEXTS) >= 64:
        _CONTEXTS.clear()
    return _CONTEXTS.setdefault(made, made)


class Facts(NamedTuple):
    """What rules can see of one command."""

    cmd: SimpleCommand
    call: KubectlCall | None = None
    report: ManifestReport = ManifestReport()
    verb: tuple[str, ...] = ()
    resources: frozenset[str] = frozenset()  # qualified names, plus "qualified/sub" forms
    namespaces: frozenset[str] = frozenset()  # "*" when all namespaces
    risks: frozenset[str] = frozenset()
    objects: frozenset[str] = frozenset()
    problems: tuple[str, ...] = ()


def decide(
    parsed: ParsedLine,
    ruleset: RuleSet,
    context: PolicyContext = NO_CONTEXT,
    read: manifests.Reader | None = None,
    render: manifests.Render | None = None,
    decided: "Decided | None" = None,
) -> Decision:
    """Decide every command of `parsed` and the line as a whole (`read` and `render`: see
    `manifests.inspect_call`; `decided`: a batch's commands decided before)."""
    decide_one = decide_command if decided is None else decided.decide
    decisions = tuple(
        decide_one(cmd, ruleset.rules, context, read, render)
        for cmd in _fed_by_kustomize(parsed.commands)
    )
    action = strictest([d.action for d in decisions])
    if parsed.problems and action is Action.ALLOW:
        action = Action.APPROVE
    return Decision(
        action=action,
        reason=_line_reason(action, decisions, parsed.problems),
        commands=decisions,
        problems=parsed.problems,
    )


def _fed_by_kustomize(commands: tuple[SimpleCommand, ...]) -> tuple[SimpleCommand, ...]:
    """The commands, a kubectl whose stdin is piped from `kustomize build DIR` or `kubectl
    kustomize DIR` marked as reading that render (`stdin_from="kustomize"`, `stdin=DIR`):
    its `-f -` is decided on what DIR renders to (the kubectl guardctl runs decides again
    on the bytes it is given)."""
    out = list(commands)
    for i in range(1, len(out)):
        cmd, source = out[i], out[i - 1]
        if cmd.stdin_from != "pipe" or cmd.via != source.via or kubectl_args(cmd) is None:
            continue
        folder = _kustomize_folder(source)
        if folder is not None:
            out[i] = cmd._replace(stdin_from="kustomize", stdin=folder)
    return tuple(out)


def _kustomize_folder(cmd: SimpleCommand) -> str | None:
    """DIR of a plain `kustomize build [DIR]` or `kubectl kustomize [DIR]` (no flags, nothing
    only known at run time), as the program opens it; else None."""
    if cmd.dynamic or cmd.open_tail or cmd.assignments:
        return None
    words = cmd.argv[1:]
    if cmd.program == "kustomize" and words[:1] == ("build",):
        rest = words[1:]
    elif cmd.program == "kubectl" and words[:1] == ("kustomize",):
        rest = words[1:]
    else:
        return None
    if len(rest) > 1 or any(w.startswith("-") for w in rest):
        return None
    return manifests.kubectl_path(rest[0], cmd) if rest else "."


def gather_facts(
    cmd: SimpleCommand,
    read: manifests.Reader | None = None,
    render: manifests.Render | None = None,
    plugins: frozenset[str] = frozenset(),
) -> Facts:
    """Normalize a kubectl command and inspect its manifests; other programs keep their words."""
    problems = _program_problems(cmd)
    if kubectl_args(cmd) is None:
        return Facts(cmd=cmd, problems=problems)
    call = normalize(cmd, plugins)
    report = manifests.inspect_call(call, cmd, read or files.read_manifests, render)
    if cmd.stdin_dynamic and "-" in call.flags.get("filename", ()):
        problems += ("the manifest on stdin holds expansions only known at run time",)
    resources = set()
    for ref in call.resources:
        resources.add(ref.qualified)
        if ref.subresource:
            resources.add(f"{ref.qualified}/{ref.subresource}")
    resources |= _object_resources(report)
    namespaces = {"*"} if call.all_namespaces else {call.namespace or ""}
    namespaces |= {o.namespace for o in report.objects if o.namespace}
    return Facts(
        cmd=cmd,
        call=call,
        report=report,
        verb=tuple(call.verb.split()),
        resources=frozenset(resources),
        namespaces=frozenset(namespaces),
        risks=frozenset(r.name for r in report.risks),  # unseen sources included
        objects=frozenset(o.kind for o in report.objects),
        problems=problems + call.problems + tuple(f"cannot see {u}" for u in report.unseen),
    )


def _in_default_namespace(facts: Facts, context: PolicyContext) -> Facts:
    """A kubectl command without `-n` runs in its context's default namespace: the rules
    decide on that one, as on a `-n` (`guardctl ns kube-system` must not make writes there
    look like writes to no namespace in particular)."""
    call = facts.call
    if call is None or "" not in facts.namespaces or not context.default_namespaces:
        return facts
    chosen = call.flag("context") if "context" in call.global_flags else ""
    namespace = dict(context.default_namespaces).get(chosen or "")
    if not namespace:
        return facts
    return facts._replace(namespaces=(facts.namespaces - {""}) | {namespace})


def _program_problems(cmd: SimpleCommand) -> tuple[str, ...]:
    if not cmd.argv:  # assignments, or redirects alone (`> FILE`)
        return () if cmd.assignments or cmd.writes or cmd.stdin_from == "file" else (
            "empty command",
        )
    if 0 in cmd.dynamic:
        return (f"the program '{cmd.argv[0]}' is only known at run time",)
    unseen = unseen_code(cmd)
    return (unseen,) if unseen else ()


def _object_resources(report: ManifestReport) -> set[str]:
    if not report.objects:  # most calls: no import statement run for them
        return set()
    from guardctl.firewall.resources import by_kind

    found = set()
    for obj in report.objects:
        info = by_kind(obj.kind, obj.api_version)
        if info is not None:
            found.add(info.qualified)
    return found


def decide_command(
    cmd: SimpleCommand,
    rules: Iterable[Rule],
    context: PolicyContext = NO_CONTEXT,
    read: manifests.Reader | None = None,
    render: manifests.Render | None = None,
) -> CommandDecision:
    facts = _in_default_namespace(gather_facts(cmd, read, render, context.plugins), context)
    shape = _shape(facts)
    hits = tuple(
        hit
        for rule, alternatives in _fitting(
            _candidates(tuple(rules), facts, context, shape), facts, shape
        )
        if (hit := _first_match(rule, alternatives, facts, context)) is not None
    )
    action = strictest([h.action for h in hits])
    if facts.problems and action is Action.ALLOW:
        action = Action.APPROVE
    return CommandDecision(
        argv=cmd.argv,
        action=action,
        hits=hits,
        problems=facts.problems,
        call=facts.call,
        report=facts.report if facts.call else None,
    )


class Decided:
    """`decide_command` for a batch (see `kept`), with one rule list and context: a command
    whose decision read no file and rendered no kustomization (`-f FILE`, `-k DIR`,
    `--patch-file`, `< FILE`, ...) was decided on the command, the rules and the context
    alone, so that command met again gets that decision; one that read is decided again
    each time (files change)."""

    __slots__ = ("_kept", "_rules", "_context")

    def __init__(self) -> None:
        self._kept: Kept[SimpleCommand, CommandDecision] = Kept()
        self._rules: tuple[Rule, ...] = ()
        self._context = NO_CONTEXT

    def decide(
        self,
        cmd: SimpleCommand,
        rules: tuple[Rule, ...],
        context: PolicyContext = NO_CONTEXT,
        read: manifests.Reader | None = None,
        render: manifests.Render | None = None,
    ) -> CommandDecision:
        if rules is not self._rules or context != self._context:
            self._kept, self._rules, self._context = Kept(), rules, context
        found = self._kept.get(cmd)
        if found is not None:
            return found
        inputs: list[str] = []
        reader = read or files.read_manifests

        def reading(path: str, recursive: bool) -> list[tuple[str, str]] | None:
            inputs.append(path)
            return reader(path, recursive)

        def rendering(folder: str) -> str | None:
            inputs.append(folder)
            return render(folder) if render is not None else None

        decision = decide_command(
            cmd, rules, context, reading, None if render is None else rendering
        )
        if inputs or _chars(cmd) > MAX_CHARS:
            return decision
        return self._kept.keep(cmd, decision)


def _chars(cmd: SimpleCommand) -> int:
    """About the characters `cmd` holds (what keeping it costs)."""
    return sum(map(len, cmd.argv)) + len(cmd.stdin or "") + sum(
        len(n) + len(v) for n, v in cmd.assignments
    ) + sum(map(len, cmd.writes))


_T = TypeVar("_T")
_K = TypeVar("_K")


class _Memo:
    """A cache emptied when full, for what is derived from loaded rules, their globs and a
    policy context. Those live as long as the rules, so they are found by their ids,
    without hashing them; each entry keeps the objects its ids came from and is used only
    for objects equal to them (the same ones, at the cost of an identity check), so an id
    reused by another object after one died never finds the dead one's entry."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._entries: dict[object, tuple[Any, Any]] = {}

    def get(
        self, objects: tuple[object, ...], make: Callable[[], _T], values: tuple[object, ...] = ()
    ) -> _T:
        """What `make` gives for `objects` (found by id) and `values` (by equality)."""
        key = (*map(id, objects), *values)
        found = self._entries.get(key)
        if found is not None and found[0] == objects:
            value: _T = found[1]
            return value
        return self._keep(key, objects, make())

    def of(self, obj: _K, make: Callable[[_K], _T]) -> _T:
        """`make(obj)`, kept: `get` for one object, as fast as a lookup can be (it serves
        every glob match)."""
        found = self._entries.get(id(obj))
        if found is not None and found[0] is obj:
            value: _T = found[1]
            return value
        return self._keep(id(obj), obj, make(obj))

    def _keep(self, key: object, objects: object, value: _T) -> _T:
        if len(self._entries) >= self._limit:
            self._entries.clear()
        self._entries[key] = (objects, value)
        return value


class _Index(NamedTuple):
    """A rule list pre-sorted by what a command is, in the list's order."""

    by_head: dict[str, tuple[Rule, ...]]  # kubectl calls, by the first word of the verb
    any_head: tuple[Rule, ...]  # kubectl calls whose verb no rule names
    other: tuple[Rule, ...]  # other programs
    # what a command is (see `_candidates`) -> the screen of its candidate rules
    screens: _Memo
    # a list above -> its rules by the programs and resources they need (`_Places`)
    places: _Memo


# kinds of command whose candidate rules an index keeps (an agent's lines have only so many),
# and the globs, rules and contexts whose derived data is kept
MAX_SCREENS = 4096
# candidate lists a screen keeps, by the fragments of text present (a screen is one of many)
MAX_CHOSEN = 64
# the indexes of the rule tuples seen
_INDEXES = _Memo(8)


# (rule list, context, a command's shape) -> the screen of its commands, and the list's
# text index
_SCREENS_BY_SHAPE = _Memo(4 * MAX_SCREENS)


def _candidates(
    rules: tuple[Rule, ...],
    facts: Facts,
    context: PolicyContext = NO_CONTEXT,
    shape: "_Shape | None" = None,
) -> tuple[Rule, ...]:
    """The rules that could match a command, found without evaluating each (a rule set is
    loaded once and decides many lines): by the verb's first word, then (`_Screen`) by the
    program, resources and namespaces, then by the text their `mentions` need; `_fitting`
    keeps those that fit the command's whole shape (`shape`: the command's, when known)."""
    screen, text = _SCREENS_BY_SHAPE.get(
        (rules, context),
        lambda: _screen(rules, facts, context),
        (_shape(facts) if shape is None else shape,),
    )
    return screen.rules_for(facts.cmd, text)


def _screen(
    rules: tuple[Rule, ...], facts: Facts, context: PolicyContext
) -> "tuple[_Screen, _TextIndex]":
    """The screen of the command's kind, read from its shape only (program, verb, flags,
    resources and namespaces), and the text index of `rules`."""
    index = _index(rules)
    if facts.call is None:
        fitting = index.other
    elif not facts.verb:
        fitting = rules
    else:
        fitting = index.by_head.get(facts.verb[0], index.any_head)
    program = facts.cmd.program
    # by program, flags, resources and namespaces (`_Places`, kept for the list): the
    # whole list's, narrowed to the verb's rules (every verb's list holds the rules naming
    # no verb: a team's long list is sorted once)
    whole = index.places.get((rules,), lambda: _Places.of(rules))
    places = (
        whole if fitting is rules
        else index.places.get((fitting,), lambda: whole.narrowed(fitting))
    )
    flags = places.flag_keys.intersection(facts.call.flags) if facts.call else frozenset()
    screen = index.screens.get(
        (fitting, context),
        lambda: places.screen(facts, context, program, flags),
        (program, facts.resources, facts.namespaces, flags),
    )
    return screen, _TEXT_INDEXES.get((rules, context), lambda: _TextIndex.of(rules, context))


class _TextIndex(NamedTuple):
    """The text the rules of a list need mentioned (`_needed_text`), found in a command's
    words by one scan: made once for the list, used by each of its screens."""

    by_fragment: dict[str, tuple[Rule, ...]]  # text one of them needs -> those rules
    # fragments by three characters of theirs (the fewest fragments share: a team's
    # `*project-N-secret*` names differ only in the middle) with where those stand in them,
    # and those shorter (looked for each time)
    by_trigram: dict[str, tuple[tuple[str, int], ...]]
    short: tuple[str, ...]
    # every fragment, when they are few enough (`_FEW_FRAGMENTS`) that looking for each is
    # faster than a scan of the text (a loop in Python over its characters); else None
    every: tuple[str, ...] | None

    @classmethod
    def of(cls, rules: tuple[Rule, ...], ctx: PolicyContext) -> "_TextIndex":
        by_fragment: dict[str, list[Rule]] = {}
        for rule in rules:
            for fragment in _needed_text(rule, ctx) or ():
                by_fragment.setdefault(fragment, []).append(rule)
        by_trigram: dict[str, list[tuple[str, int]]] = {}
        short: list[str] = []
        for fragment in by_fragment:
            if len(fragment) < 3:
                short.append(fragment)
                continue
            at = min(
                range(len(fragment) - 2),
                key=lambda k: len(by_trigram.get(fragment[k : k + 3], ())),
            )
            by_trigram.setdefault(fragment[at : at + 3], []).append((fragment, at))
        return cls(
            by_fragment={k: tuple(v) for k, v in by_fragment.items()},
            by_trigram={k: tuple(v) for k, v in by_trigram.items()},
            short=tuple(short),
            every=tuple(by_fragment) if len(by_fragment) <= _FEW_FRAGMENTS else None,
        )

    def present(self, text: str) -> frozenset[str]:
        """The fragments `text` holds."""
        if self.every is not None:
            return frozenset(f for f in self.every if f in text)
        found = {f for f in self.short if f in text}
        for start in range(len(text) - 2):
            for fragment, at in self.by_trigram.get(text[start : start + 3], ()):
                if start >= at and text.startswith(fragment, start - at):
                    found.add(fragment)
        return frozenset(found)


# the text indexes of the rule lists seen, by list and context
_TEXT_INDEXES = _Memo(8)
# fragments a text index looks for one by one (a str.find each, ~60 ns for a command's
# words) instead of scanning the text by trigrams (~250 ns a character): the default
# policy's 65; a team's thousand rules need the scan
_FEW_FRAGMENTS = 128


class _Screen(NamedTuple):
    """The candidate rules of one kind of command (a program, its verb, resources and
    namespaces), in the rule set's order, those that need text mentioned set apart."""

    fixed: tuple[Rule, ...]  # rules that need no mentioned text
    needing: frozenset[int]  # id() of each of the others
    # of those, the ones whose `mentions` guard protected folders, which a path pattern
    # (`~/.c*`) reaches without their text (`_glob_reaches`)
    reaching: tuple[Rule, ...]
    order: dict[int, int]  # id(rule) -> its position in the rule list
    # the candidates chosen so far, by the fragments present and whether a pattern is
    chosen: _Memo

    @classmethod
    def build(
        cls, candidates: tuple[Rule, ...], order: dict[int, int], ctx: PolicyContext
    ) -> "_Screen":
        """The screen of `candidates` (in the order `order` gives)."""
        return cls((), frozenset(), (), order, _Memo(MAX_CHOSEN)).adding(candidates, ctx)

    def adding(self, rules: tuple[Rule, ...], ctx: PolicyContext) -> "_Screen":
        """This screen with `rules` (not in it) among its candidates, its own parts reused:
        a screen is the screen of the rules every command of a list meets, plus a few."""
        if not rules:
            return self
        fixed = list(self.fixed)
        reaching = list(self.reaching)
        needing = []
        for rule in rules:
            if _needed_text(rule, ctx) is None:
                fixed.append(rule)
                continue
            needing.append(id(rule))
            if any(_word_matcher(m.mentions, ctx)[1] for m in rule.match):
                reaching.append(rule)
        position = self.order.__getitem__
        if len(fixed) > len(self.fixed):
            fixed.sort(key=lambda r: position(id(r)))
        return _Screen(
            fixed=tuple(fixed),
            needing=self.needing.union(needing) if needing else self.needing,
            reaching=tuple(reaching),
            order=self.order,
            chosen=_Memo(MAX_CHOSEN),
        )

    def narrowed(self, kept: frozenset[int]) -> "_Screen":
        """This screen for the candidates whose id() is in `kept`."""
        return _Screen(
            fixed=tuple(r for r in self.fixed if id(r) in kept),
            needing=self.needing & kept,
            reaching=tuple(r for r in self.reaching if id(r) in kept),
            order=self.order,
            chosen=_Memo(MAX_CHOSEN),
        )

    def rules_for(self, cmd: SimpleCommand, text: _TextIndex) -> tuple[Rule, ...]:
        """The candidates for `cmd`: the fixed ones, those needing text it mentions (found
        by `text`, the index of the screen's list), and with a path pattern those reaching
        protected folders (one tuple for each set of fragments present, which `_fitting`
        finds its work by)."""
        if not self.needing:
            return self.fixed
        mentioned = _mentioned(cmd)
        present = text.present(mentioned.text)
        # a pattern may name a protected path without its text
        reached = bool(mentioned.patterns and self.reaching)
        if not present and not reached:
            return self.fixed
        return self.chosen.get(
            (), lambda: self._with_fragments(text, present, reached), (present, reached)
        )

    def _with_fragments(
        self, text: _TextIndex, present: frozenset[str], reached: bool
    ) -> tuple[Rule, ...]:
        found = {
            id(r): r for f in present for r in text.by_fragment[f] if id(r) in self.needing
        }
        if reached:
            found.update((id(r), r) for r in self.reaching)
        if not found:
            return self.fixed
        found.update((id(r), r) for r in self.fixed)
        return tuple(sorted(found.values(), key=lambda r: self.order[id(r)]))


class _Places(NamedTuple):
    """A rule list sorted by the programs and resources its alternatives need, so that the
    rules fitting a command's program, resources and namespaces are found without looking
    at every rule of a long list (a team's rules about their own resources)."""

    programmed: tuple[Rule, ...]  # every alternative names programs
    # else every alternative needs flags (`Rule.flag_needs`): by one flag of each
    # alternative's, which a call must give for it to apply (`_may_match`)
    by_flag: dict[str, tuple[Rule, ...]]
    flag_keys: frozenset[str]
    anywhere: tuple[Rule, ...]  # else some alternative needs no resource and no namespace
    any_resource: tuple[Rule, ...]  # else some alternative needs no resource (or any, "*")
    by_resource: dict[str, tuple[Rule, ...]]  # the others, by each resource they name
    order: dict[int, int]  # id(rule) -> its position in the list
    # places narrowed to some of a list's rules (`narrowed`): the list's places, and id()
    # of each rule kept
    whole: "_Places | None" = None
    kept: frozenset[int] = frozenset()

    @classmethod
    def of(cls, rules: tuple[Rule, ...]) -> "_Places":
        programmed: list[Rule] = []
        by_flag: dict[str, list[Rule]] = {}
        anywhere: list[Rule] = []
        any_resource: list[Rule] = []
        by_resource: dict[str, list[Rule]] = {}
        for rule in rules:
            resources = _PLACES_OF.of(rule, _place_of)
            if all(m.programs for m in rule.match):
                programmed.append(rule)
            elif rule.flag_needs is not None:
                for flag in dict.fromkeys(min(needs) for needs in rule.flag_needs):
                    by_flag.setdefault(flag, []).append(rule)
            elif resources is _ANYWHERE:
                anywhere.append(rule)
            elif resources is _ANY_RESOURCE:
                any_resource.append(rule)
            else:
                for resource in resources:
                    by_resource.setdefault(resource, []).append(rule)
        return cls(
            programmed=tuple(programmed),
            by_flag={k: tuple(v) for k, v in by_flag.items()},
            flag_keys=frozenset(by_flag),
            anywhere=tuple(anywhere),
            any_resource=tuple(any_resource),
            by_resource={k: tuple(v) for k, v in by_resource.items()},
            order={id(r): i for i, r in enumerate(rules)},
        )

    def screen(
        self, facts: Facts, ctx: PolicyContext, program: str, flags: frozenset[str]
    ) -> "_Screen":
        """The screen of the rules of the list that `_may_run` and `_may_fit_place` let
        through: those that fit anywhere (their screen kept), and those of the others that
        fit here (a rule of `by_resource` fits only a command of a resource it names, one
        of `by_flag` only a call giving a flag it is kept by: `flags`)."""
        found = {
            id(r): r
            for r in self.programmed
            if _may_run(r, program) and _may_fit_place(r, facts)
        }
        for flag in flags:
            found.update(
                (id(r), r) for r in self.by_flag[flag] if _may_fit_place(r, facts)
            )
        found.update((id(r), r) for r in _fitting_place(self.any_resource, facts))
        for resource in facts.resources:
            found.update(
                (id(r), r) for r in _fitting_place(self.by_resource.get(resource, ()), facts)
            )
        return self.base(ctx).adding(tuple(found.values()), ctx)

    def narrowed(self, rules: tuple[Rule, ...]) -> "_Places":
        """These places for `rules`, some rules of this list in its order: what `of` gives
        for them (a rule's place is its own), the order's positions this list's."""
        kept = frozenset(map(id, rules))

        def only(group: tuple[Rule, ...]) -> tuple[Rule, ...]:
            return tuple(compress(group, map(kept.__contains__, map(id, group))))

        by_flag = {k: found for k, group in self.by_flag.items() if (found := only(group))}
        return _Places(
            programmed=only(self.programmed),
            by_flag=by_flag,
            flag_keys=frozenset(by_flag),
            anywhere=only(self.anywhere),
            any_resource=only(self.any_resource),
            by_resource={
                k: found for k, group in self.by_resource.items() if (found := only(group))
            },
            order=self.order,
            whole=self,
            kept=kept,
        )

    def base(self, ctx: PolicyContext) -> "_Screen":
        """The screen of the rules that fit anywhere (kept): narrowed places narrow their
        list's."""
        whole = self.whole
        return _BASE_SCREENS.get(
            (self, ctx),
            lambda: _Screen.build(self.anywhere, self.order, ctx)
            if whole is None
            else whole.base(ctx).narrowed(self.kept),
        )


def _fitting_place(rules: tuple[Rule, ...], facts: Facts) -> Iterable[Rule]:
    """The rules of `rules` that `_may_fit_place` lets through, those of a long group found
    by the namespaces they name (`_ByNamespace`): a team's rules each name their own."""
    if len(rules) > _FEW and "*" not in facts.namespaces:
        rules = _BY_NAMESPACE.of(rules, _ByNamespace.of).among(facts.namespaces)
    return (r for r in rules if _may_fit_place(r, facts))


# a group of rules this long or shorter is screened rule by rule
_FEW = 16


class _ByNamespace(NamedTuple):
    """A group of rules by the namespace globs of their alternatives: for a command in some
    namespaces, the rules that can fit it (more, never fewer: `_may_fit_place` decides)."""

    exact: dict[str, tuple[Rule, ...]]  # a glob without wildcards: that namespace
    prefixed: dict[str, tuple[Rule, ...]]  # `P*` with no other wildcard: the prefix P
    longest: int  # the longest prefix
    others: tuple[Rule, ...]  # a rule some alternative of which fits otherwise

    @classmethod
    def of(cls, rules: tuple[Rule, ...]) -> "_ByNamespace":
        exact: dict[str, list[Rule]] = {}
        prefixed: dict[str, list[Rule]] = {}
        others: list[Rule] = []
        for rule in rules:
            globs = [g for m in rule.match for g in m.namespaces]
            if not all(m.namespaces for m in rule.match) or not all(
                map(_plain_namespace_glob, globs)
            ):
                others.append(rule)
                continue
            for glob in dict.fromkeys(globs):
                if glob.endswith("*"):
                    prefixed.setdefault(glob.rstrip("*"), []).append(rule)
                else:
                    exact.setdefault(glob, []).append(rule)
        return cls(
            exact={k: tuple(v) for k, v in exact.items()},
            prefixed={k: tuple(v) for k, v in prefixed.items()},
            longest=max(map(len, prefixed), default=0),
            others=tuple(others),
        )

    def among(self, namespaces: frozenset[str]) -> tuple[Rule, ...]:
        """The rules that can fit a command in `namespaces` (no `*`), in no set order."""
        found = {id(r): r for r in self.others}
        for ns in namespaces:
            found.update((id(r), r) for r in self.exact.get(ns, ()))
            for k in range(min(len(ns), self.longest) + 1):
                found.update((id(r), r) for r in self.prefixed.get(ns[:k], ()))
        return tuple(found.values())


def _plain_namespace_glob(glob: str) -> bool:
    """A glob that is a namespace, or a prefix followed by stars (`team-*`)."""
    return _GLOB_CHARACTER.search(glob.rstrip("*")) is None


_GLOB_CHARACTER = re.compile(r"[*?\[]")


# the groups of rules by namespace, by group (they live as long as their places)
_BY_NAMESPACE = _Memo(MAX_SCREENS)


# what `_place_of` says of a rule that some alternative of fits every resource, and
# namespace; or every resource, in some namespaces
_ANYWHERE: tuple[str, ...] = ("(anywhere)",)
_ANY_RESOURCE: tuple[str, ...] = ("(any resource)",)
_PLACES_OF = _Memo(4 * MAX_SCREENS)


def _place_of(rule: Rule) -> tuple[str, ...]:
    """`_ANYWHERE`, `_ANY_RESOURCE`, or else every resource some alternative names."""
    open_resource = [not m.resources or "*" in m.resources for m in rule.match]
    if any(o and not m.namespaces for o, m in zip(open_resource, rule.match, strict=True)):
        return _ANYWHERE
    if any(open_resource):
        return _ANY_RESOURCE
    return tuple(dict.fromkeys(r for m in rule.match for r in m.resources))


def _may_run(rule: Rule, program: str) -> bool:
    """Some alternative of `rule` can match a command of `program` (`_check_programs`)."""
    return any(not m.programs or _any_glob(program, m.programs) for m in rule.match)


def _may_fit_place(rule: Rule, facts: Facts) -> bool:
    """Some alternative of `rule` can match a command of these resources and namespaces
    (what `_check_resources` and `_check_namespaces` need)."""
    return any(
        (not m.resources or "*" in m.resources or not facts.resources.isdisjoint(m.resources))
        and (
            not m.namespaces
            or "*" in facts.namespaces
            or any(_any_glob(ns, m.namespaces) for ns in facts.namespaces)
        )
        for m in rule.match
    )


# the screens of the rules that fit anywhere, by rule list and context
_BASE_SCREENS = _Memo(MAX_SCREENS)
# a rule's needed text in a context: a rule meets every screen
_NEEDED = _Memo(MAX_SCREENS)


def _needed_text(rule: Rule, ctx: PolicyContext) -> frozenset[str] | None:
    """Text one of which a command's mentioned words must hold for `rule` to match: each
    alternative's `mentions` need one of their fragments; None when some alternative
    needs none (it has no `mentions`, or a glob with no literal text)."""
    return _NEEDED.get((rule, ctx), lambda: _needed_by(rule, ctx))


def _needed_by(rule: Rule, ctx: PolicyContext) -> frozenset[str] | None:
    needed: set[str] = set()
    for m in rule.match:
        if not m.mentions:
            return None
        fragments = _word_matcher(m.mentions, ctx)[0].fragments
        if fragments is None:
            return None
        needed.update(fragments)
    return frozenset(needed)


def _index(rules: tuple[Rule, ...]) -> _Index:
    return _INDEXES.of(rules, _new_index)


def _new_index(rules: tuple[Rule, ...]) -> _Index:
    heads = {head for rule in rules for head in rule.verb_heads or ()}
    return _Index(
        by_head={
            head: tuple(r for r in rules if r.verb_heads is None or head in r.verb_heads)
            for head in heads
        },
        any_head=tuple(r for r in rules if r.verb_heads is None),
        other=tuple(r for r in rules if not r.kubectl_only),
        screens=_Memo(MAX_SCREENS),
        places=_Memo(MAX_SCREENS),
    )


def match_rule(rule: Rule, facts: Facts, context: PolicyContext) -> RuleHit | None:
    """A RuleHit when some alternative of `rule.match` holds and none of `rule.unless` does."""
    return _first_match(rule, rule.match, facts, context)


class _Shape(NamedTuple):
    """What of a command decides whether an alternative of a rule can match it at all
    (`_may_match`): commands of one shape meet the same alternatives of each rule, which
    are found once per shape (and list of candidates)."""

    verb: tuple[str, ...]
    program: str
    kubectl: bool
    resources: frozenset[str]
    namespaces: frozenset[str]
    risks: frozenset[str]
    objects: frozenset[str]
    dry_run: bool | None  # None: not a kubectl call
    understood: bool
    flags: frozenset[str]  # flags given (`_flag_holds` needs its flag given)
    env: bool  # some assignment
    writes: bool  # some redirect writing a file


def _shape(facts: Facts) -> _Shape:
    call, cmd = facts.call, facts.cmd
    return _Shape(
        verb=facts.verb,
        program=cmd.program,
        kubectl=call is not None,
        resources=facts.resources,
        namespaces=facts.namespaces,
        risks=facts.risks,
        objects=facts.objects,
        dry_run=None if call is None else call.dry_run,
        understood=not facts.problems,
        flags=frozenset(call.flags) if call is not None else frozenset(),
        env=bool(cmd.assignments),
        writes=bool(cmd.writes),
    )


# (candidate rules, a command's shape) -> each rule that can match it, with its alternatives
# that can (see `_Shape`)
_FITTING = _Memo(4 * MAX_SCREENS)


def _fitting(
    rules: tuple[Rule, ...], facts: Facts, shape: "_Shape | None" = None
) -> tuple[tuple[Rule, tuple[Match, ...]], ...]:
    """The rules of `rules` some alternative of which can match the command, each with
    those alternatives, in order: the others fail a check the command's shape decides."""
    shape = _shape(facts) if shape is None else shape
    return _FITTING.get((rules,), lambda: _fit(rules, shape), (shape,))


def _fit(rules: tuple[Rule, ...], shape: _Shape) -> tuple[tuple[Rule, tuple[Match, ...]], ...]:
    fitting = []
    for rule in rules:
        if any(_always_matches(u, shape) for u in rule.unless):
            continue  # the rule never applies to this shape (`unless: {programs: [kubectl]}`)
        alternatives = tuple(m for m in rule.match if _may_match(m, shape))
        if alternatives:
            fitting.append((rule, alternatives))
    return tuple(fitting)


# match keys whose check `_may_match` reads exactly: it gives None for a command of a shape
# where `_may_match` is false, and words where it is true
_SHAPE_KEYS = frozenset(
    {"verbs", "resources", "namespaces", "risks", "objects", "dry_run", "programs", "understood"}
)


def _always_matches(m: Match, shape: _Shape) -> bool:
    """`m` matches every command of this shape: every check it has reads only the shape."""
    return _SHAPE_KEYS.issuperset(m.keys) and _may_match(m, shape)


def _may_match(m: Match, shape: _Shape) -> bool:
    """False when `m` cannot match a command of this shape: a check of `match_alternative`
    that reads only the shape gives None (verbs, resources, namespaces, risks, objects,
    dry run, programs, understood), or a flag, an assignment or a redirect that `m` needs
    is missing."""
    if m.kubectl_only and not shape.kubectl:
        return False
    if m.verbs and not any(shape.verb[: len(v)] == v for v in m.verbs):
        return False
    if m.resources and not (
        shape.resources and ("*" in m.resources or not shape.resources.isdisjoint(m.resources))
    ):
        return False
    if m.namespaces and not (
        "*" in shape.namespaces or any(_any_glob(ns, m.namespaces) for ns in shape.namespaces)
    ):
        return False
    if m.risks and shape.risks.isdisjoint(m.risks):
        return False
    if m.objects and not any(_any_glob(kind, m.objects) for kind in shape.objects):
        return False
    if m.dry_run is not None and m.dry_run != shape.dry_run:
        return False
    if m.programs and not _any_glob(shape.program, m.programs):
        return False
    if m.understood is not None and m.understood != shape.understood:
        return False
    if (m.env and not shape.env) or (m.writes and not shape.writes):
        return False
    return all(c.name in shape.flags for c in m.flags)


def _first_match(
    rule: Rule, alternatives: tuple[Match, ...], facts: Facts, context: PolicyContext
) -> RuleHit | None:
    """`match_rule` over some of the rule's alternatives, in their order."""
    for alternative in alternatives:
        matched = match_alternative(alternative, facts, context)
        if matched is None:
            continue
        if any(match_alternative(u, facts, context) is not None for u in rule.unless):
            return None
        return RuleHit(id=rule.id, action=rule.action, reason=rule.reason, matched=matched)
    return None


# --------------------------------------------------------------------------- matching

Check = Callable[[Match, Facts, PolicyContext], "list[str] | None"]


def match_alternative(m: Match, facts: Facts, context: PolicyContext) -> tuple[str, ...] | None:
    """The normalized words that satisfied `m`, or None when it does not match."""
    if m.kubectl_only and facts.call is None:
        return None
    words: list[str] = []
    for key in m.keys:
        found = _CHECKS[key](m, facts, context)
        if found is None:
            return None
        words.extend(found)
    return tuple(words)


def _check_verbs(m: Match, f: Facts, _: PolicyContext) -> list[str] | None:
    if not m.verbs:
        return []
    for verb in m.verbs:
        if f.verb[: len(verb)] == verb:
            return [f"verb={' '.join(f.verb)}"]
    return None


def _check_resources(m: Match, f: Facts, _: PolicyContext) -> list[str] | None:
    if not m.resources:
        return []
    if "*" in m.resources and f.resources:
        return [f"resource={r}" for r in sorted(f.resources)]
    found = sorted(f.resources.intersection(m.resources))
    return [f"resource={r}" for r in found] or None


def _check_namespaces(m: Match, f: Facts, _: PolicyContext) -> list[str] | None:
    if not m.namespaces:
        return []
    if "*" in f.namespaces:
        return ["namespace=* (all namespaces)"]
    found = [ns for ns in sorted(f.namespaces) if _any_glob(ns, m.namespaces)]
    return [f"namespace={ns}" for ns in found] or None


def _check_flags(m: Match, f: Facts, ctx: PolicyContext) -> list[str] | None:
    words: list[str] = []
    for condition in m.flags:
        found = _flag_holds(condition, f.call, ctx) if f.call else None
        if found is None:
            return None
        words.append(found)
    return words


def _flag_holds(condition: FlagCondition, call: KubectlCall, ctx: PolicyContext) -> str | None:
    values = call.flags.get(condition.name)
    if not values or values[-1] == "false":
        return None
    if condition.global_only and condition.name not in call.global_flags:
        return None
    if condition.values_in:
        is_in = _word_matcher(condition.values_in, ctx)[0].match
        hit = next((v for v in values if is_in(v)), None)
        return None if hit is None else f"--{condition.name}={hit}"
    if condition.values_not_in:
        is_in = _word_matcher(condition.values_not_in, ctx)[0].match
        hit = next((v for v in values if not is_in(v)), None)
        return None if hit is None else f"--{condition.name}={hit}"
    return f"--{condition.name}"


def _check_risks(m: Match, f: Facts, _: PolicyContext) -> list[str] | None:
    if not m.risks:
        return []
    found = [r for r in sorted(f.risks) if r in m.risks]
    details = [r.detail or r.name for r in f.report.risks if r.name in found]
    if "unseen-manifest" in found:
        details += list(f.report.unseen)
    return [f"risk={d}" for d in dict.fromkeys(details or found)] or None


def _check_objects(m: Match, f: Facts, _: PolicyContext) -> list[str] | None:
    if not m.objects:
        return []
    found = [k for k in sorted(f.objects) if _any_glob(k, m.objects)]
    return [f"object={k}" for k in found] or None


def _check_dry_run(m: Match, f: Facts, _: PolicyContext) -> list[str] | None:
    if m.dry_run is None:
        return []
    return [] if f.call is not None and f.call.dry_run == m.dry_run else None


def _check_programs(m: Match, f: Facts, _: PolicyContext) -> list[str] | None:
    if not m.programs:
        return []
    return [f"program={f.cmd.program}"] if _any_glob(f.cmd.program, m.programs) else None


def _check_args(m: Match, f: Facts, ctx: PolicyContext) -> list[str] | None:
    return _words_matching(f.cmd.argv[1:], m.args, ctx, "arg")


def _check_subcommands(m: Match, f: Facts, ctx: PolicyContext) -> list[str] | None:
    return _words_matching(_subcommand(f.cmd.argv), m.subcommands, ctx, "subcommand")


def _subcommand(argv: Iterable[str]) -> list[str]:
    """The program's own command: its first argument, or the one after `--traceback`, when
    it is no option (`guardctl --context x creds` is kubectl's, not guardctl's `creds`)."""
    words = list(argv)[1:3]
    if words[:1] == ["--traceback"]:
        words = words[1:]
    return [w for w in words[:1] if not w.startswith("-")]


def _check_env(m: Match, f: Facts, ctx: PolicyContext) -> list[str] | None:
    return _words_matching([name for name, _ in f.cmd.assignments], m.env, ctx, "env")


def _check_writes(m: Match, f: Facts, ctx: PolicyContext) -> list[str] | None:
    return _words_matching(f.cmd.writes, m.writes, ctx, "writes")


def _check_mentions(m: Match, f: Facts, ctx: PolicyContext) -> list[str] | None:
    return _words_matching(_mentioned(f.cmd), m.mentions, ctx, "mentions")


class _Words(NamedTuple):
    """Words to match, each as its spellings (`_spellings`: the word first), and all of them
    joined by NUL for `_GlobSet.may_match_any`: made once per command, used by every rule."""

    spelled: tuple[tuple[str, ...], ...]
    text: str
    patterns: tuple[str, ...]  # the words that are path patterns, for `_glob_reaches`


def _words(words: Iterable[str]) -> _Words:
    spelled = tuple(_spellings(w) if "/" in w else (w,) for w in words)
    text = "\0".join(s for spellings in spelled for s in spellings)
    # a pattern holds a glob character: most commands have none
    globbed = "*" in text or "?" in text or "[" in text
    return _Words(
        spelled,
        text,
        tuple(s[0] for s in spelled if _PATH_PATTERN.match(s[0])) if globbed else (),
    )


# the last command's mentioned words: a command meets every `mentions` rule in a row (one
# slot, read and replaced whole, so threads deciding at once can only miss it)
_MENTIONED: list[tuple[SimpleCommand, _Words] | None] = [None]


def _mentioned(cmd: SimpleCommand) -> _Words:
    """Every word of `cmd` a `mentions` glob reads: arguments, assignment values, redirect
    targets, and its stdin (a file's path, or a here-document's or here-string's text)."""
    last = _MENTIONED[0]
    if last is not None and last[0] is cmd:
        return last[1]
    words = [*cmd.argv[1:], *(v for _, v in cmd.assignments), *cmd.writes]
    if cmd.stdin is not None:
        words.append(cmd.stdin)
    prepared = _words(words)
    _MENTIONED[0] = (cmd, prepared)
    return prepared


def _check_understood(m: Match, f: Facts, _: PolicyContext) -> list[str] | None:
    if m.understood is None:
        return []
    understood = not f.problems
    if understood != m.understood:
        return None
    return [f"not understood: {p}" for p in f.problems]


def _words_matching(
    words: Iterable[str] | _Words, globs: tuple[str, ...], ctx: PolicyContext, label: str
) -> list[str] | None:
    if not globs:
        return []
    prepared = words if isinstance(words, _Words) else _words(words)
    if not prepared.spelled:
        return None
    glob_set, roots = _word_matcher(globs, ctx)
    found = (
        [spellings[0] for spellings in prepared.spelled if any(map(glob_set.match, spellings))]
        if glob_set.may_match_any(prepared.text)
        else []
    )
    if roots:
        found += [w for w in prepared.patterns if _glob_reaches(w, roots)]
    return [f"{label}={w}" for w in dict.fromkeys(found)] or None


_Matcher = tuple["_GlobSet", tuple[tuple[str, ...], ...]]
# a list of word globs in a context -> its glob set and protected roots
_MATCHERS = _Memo(MAX_SCREENS)


def _word_matcher(globs: tuple[str, ...], ctx: PolicyContext) -> _Matcher:
    """The glob set (placeholders filled in) and protected roots of one list of globs."""
    return _MATCHERS.get(
        (globs, ctx),
        lambda: (_glob_set(_expand_placeholders(globs, ctx)), _protected_roots(globs, ctx)),
    )


def _spellings(word: str) -> tuple[str, ...]:
    """A word, and when it is a path, its lexical normal form: `a//b`, `a/./b` and `a/x/../b`
    name a/b as far as a pattern can tell (both are tried: either match counts)."""
    if "/" not in word:
        return (word,)
    normal = posixpath.normpath(word)
    return (word, normal) if normal != word else (word,)


def _protected_roots(globs: tuple[str, ...], ctx: PolicyContext) -> tuple[tuple[str, ...], ...]:
    """Folders a list naming `@protected` guards, as path components, for `_glob_reaches`:
    the context's own paths, and `~/LITERAL` for each `*/LITERAL*`-shaped pattern."""
    if not any("@protected" in g for g in globs):
        return ()
    roots = list(ctx.protected_paths)
    for glob in globs:
        literal = glob.strip("*")
        if glob.startswith("*") and literal and not any(c in literal for c in "*?[@$"):
            roots.append("~/" + literal.lstrip("/"))
    return tuple(tuple(posixpath.normpath(r).split("/")) for r in dict.fromkeys(roots))


# an absolute or `~` path with a glob character: a pattern the shell expands
_PATH_PATTERN = re.compile(r"[/~][^*?\[]*[*?\[]")


def _glob_reaches(word: str, roots: tuple[tuple[str, ...], ...]) -> bool:
    """A path pattern (`~/.config/guard*/x`, `~/.c*`) that could name a protected folder, a
    file in it or a folder above it: each of its components matches the root's, as far as
    the shorter goes."""
    parts = posixpath.normpath(word).split("/")
    return any(
        all(fnmatchcase(name, part) for part, name in zip(parts, root, strict=False))
        for root in roots  # as far as the shorter goes
    )


def _expand_placeholders(globs: tuple[str, ...], ctx: PolicyContext) -> tuple[str, ...]:
    out: list[str] = []
    for glob in globs:
        if "@protected" in glob:
            out.extend(glob.replace("@protected", p) for p in ctx.protected_paths)
        elif "@cluster" in glob:
            out.extend(glob.replace("@cluster", _literal(h)) for h in ctx.cluster_hosts)
        elif "@context" in glob:
            out.extend(glob.replace("@context", _literal(c)) for c in ctx.contexts)
        else:
            out.append(glob)
    return tuple(out)


def _literal(text: str) -> str:
    """`text` as a glob that matches only itself (a context may be named `dev*`)."""
    return re.sub(r"([*?\[])", r"[\1]", text)


# a list of globs -> its glob set (the lists of loaded rules, found without hashing them)
_GLOB_SETS = _Memo(MAX_SCREENS)


def _any_glob(word: str, globs: tuple[str, ...]) -> bool:
    return _GLOB_SETS.of(globs, _glob_set).match(word)


def _literal_runs(glob: str) -> list[str]:
    """The text between a glob's `*`, `?` and bracket expressions, read as fnmatch reads
    them (`[!...]`, a `]` first in the brackets is a member, a `[` never closed is itself)."""
    runs, current, i, n = [], "", 0, len(glob)
    while i < n:
        c = glob[i]
        if c == "[":
            j = i + 1
            j += j < n and glob[j] == "!"
            j += j < n and glob[j] == "]"
            while j < n and glob[j] != "]":
                j += 1
            if j < n:
                runs.append(current)
                current, i = "", j + 1
                continue
        if c in "*?":
            runs.append(current)
            current = ""
        else:
            current += c
        i += 1
    return [*runs, current]


class _GlobSet(NamedTuple):
    """Shell globs (case-sensitive, like fnmatchcase) sorted by shape, so that the common
    ones need no regex: compiling regexes is most of what one `check` spends deciding."""

    exact: frozenset[str]
    prefixes: tuple[str, ...]  # "x*"
    suffixes: tuple[str, ...]  # "*x"
    contains: tuple[str, ...]  # "*x*"
    everything: bool  # "*"
    rest: re.Pattern[str] | None  # any other shape
    # text one of these globs needs in any word it matches (the longest literal run of
    # each); None when one needs none (`*`, `[ab]`): then words are not screened
    fragments: tuple[str, ...] | None

    def may_match_any(self, text: str) -> bool:
        """False only when no word of `text` (words joined by NUL) can match."""
        return self.fragments is None or any(map(text.__contains__, self.fragments))

    def match(self, word: str) -> bool:
        return (
            self.everything
            or word in self.exact
            or word.startswith(self.prefixes)
            or word.endswith(self.suffixes)
            or any(map(word.__contains__, self.contains))
            or (self.rest is not None and self.rest.match(word) is not None)
        )


@lru_cache(maxsize=4096)
def _glob_set(globs: tuple[str, ...]) -> _GlobSet:
    # by (leading star, trailing star); a run of stars matches what one star does
    shapes: dict[tuple[bool, bool], list[str]] = {
        (False, False): [], (False, True): [], (True, False): [], (True, True): []
    }
    rest: list[str] = []
    for glob in globs:
        inner = glob.strip("*")
        if any(c in inner for c in "*?["):
            rest.append(glob)
        else:
            shapes[glob.startswith("*"), glob.endswith("*")].append(inner)
    contains = shapes[True, True]
    literals = [*shapes[False, False], *shapes[False, True], *shapes[True, False], *contains]
    literals += [max(_literal_runs(g), key=len) for g in rest]
    return _GlobSet(
        exact=frozenset(shapes[False, False]),
        prefixes=tuple(shapes[False, True]),
        suffixes=tuple(shapes[True, False]),
        contains=tuple(c for c in contains if c),
        everything="" in contains,
        rest=re.compile("|".join(translate(g) for g in rest)) if rest else None,
        fragments=None if "" in literals else tuple(dict.fromkeys(literals)),
    )


# match key -> its check; Match.keys lists only the keys a rule sets
_CHECKS: dict[str, Check] = {
    "verbs": _check_verbs,
    "resources": _check_resources,
    "namespaces": _check_namespaces,
    "flags": _check_flags,
    "risks": _check_risks,
    "objects": _check_objects,
    "dry_run": _check_dry_run,
    "programs": _check_programs,
    "subcommands": _check_subcommands,
    "args": _check_args,
    "env": _check_env,
    "writes": _check_writes,
    "mentions": _check_mentions,
    "understood": _check_understood,
}


# --------------------------------------------------------------------------- reasons


def _line_reason(
    action: Action, decisions: tuple[CommandDecision, ...], line_problems: tuple[str, ...]
) -> str:
    if line_problems and action is not Action.DENY:
        decisive_hits = [h for d in decisions for h in d.hits if h.action is action]
        if not decisive_hits:
            return f"guardctl could not fully understand this line: {line_problems[0]}."
    for d in decisions:
        if d.action is not action:
            continue
        strongest = [h for h in d.hits if h.action is action]
        if strongest:
            hit = strongest[0]
            return f"{_verb(action)} by rule {hit.id}: {hit.reason}"
        if d.problems and action is not Action.ALLOW:
            return f"guardctl could not fully understand '{' '.join(d.argv)}': {d.problems[0]}."
    if action is Action.ALLOW:
        return "allowed: no rule objects to this line."
    return f"{_verb(action)}."


def _verb(action: Action) -> str:
    return {
        Action.ALLOW: "allowed",
        Action.APPROVE: "needs approval",
        Action.DENY: "denied",
    }[action]
