"""What the manifests a kubectl line carries would do: which objects, and which risky properties.

A line carries manifests in `-f` files, folders and heredocs, in `kubectl patch` bodies, in
`kubectl run --overrides`, and implicitly in flags (`debug node/x`, `create clusterrolebinding
--clusterrole=cluster-admin`). This module turns all of them into one `ManifestReport`:
the objects found (so policy sees that `delete -f ns.yaml` deletes a Namespace) and the
risks from `RISKS` (so policy can ask a human before a privileged pod is applied).

Pod-level and container-level risky keys are searched for *everywhere* in an object, not
only at the pod-template paths of the built-in kinds: custom resources (Argo Rollouts,
operators' CRDs) embed pod specs at paths we cannot know, and a patch may carry a fragment.
A `privileged: true` in an unrelated CRD field is a false alarm we accept (fail closed).

Decisions the risk names encode (rules can only name these, so they are spelled out here):

- runAsRoot: `runAsUser: 0` at pod or container level. A pod-level 0 counts even when every
  container overrides it. `runAsNonRoot: false` alone is not a risk: it only switches a check
  off, the image still decides the user, exactly as when the field is omitted.
- capabilities: any entry in `capabilities.add`; the detail lists them.
- cluster-admin-binding: a RoleBinding/ClusterRoleBinding whose roleRef is one of the
  ClusterRoles cluster-admin, admin or edit (edit can read secrets and exec, admin can also
  grant RBAC in its namespace). A binding body that changes `subjects` without saying which
  role it binds (a patch, `set subject`) counts too, since the bound role is unknown.
- rbac-wildcard: "*" in verbs, resources or apiGroups, and a ClusterRole `aggregationRule`
  (its permissions are whatever other ClusterRoles the selector gathers, unknown here).
  A ClusterRole labelled `aggregate-to-*` is not a separate risk: its own rules are scanned.
- rbac-escalate/-bind: that verb on roles or clusterroles; rbac-impersonate: on users,
  groups, serviceaccounts, uids or userextras; rbac-secrets: get/list/watch on secrets;
  rbac-token-create: create on serviceaccounts/token. A "*" verb or resource grants them all;
  a rule field that is missing (a patch fragment) is unknown and matches everything.
- pod-security-label: a Namespace body (manifest or patch; a patch of an unknown kind too)
  that names a `pod-security.kubernetes.io/` label, in any spelling (`~1`, `\u002f`, a JSON
  patch `remove`), or a patch that replaces or removes a Namespace's labels or metadata
  wholesale, or `replace` of a Namespace (which drops the labels it does not carry).
- node-scheduling: a Node body that sets `spec.unschedulable` or touches `spec.taints`.
- zero-replicas: `spec.replicas` of 0 in any body (a workload, the `scale` subresource).
- service-account: a patch or `--overrides` that sets `serviceAccountName`/`serviceAccount`
  (a running workload changes identity; plain manifests that name one are ordinary).
- service-account-token: a Secret of type `kubernetes.io/service-account-token`, which the
  cluster fills with a token that never expires.
- unseen-manifest: a source guardctl could not read or render; it always comes with an
  `unseen` entry, so rules can treat "did not see it" like any other risk.

The tables behind these checks live in `guardctl/data/manifests.json`.
"""

import json
from collections.abc import Callable, Iterator, Mapping
from functools import lru_cache
from itertools import islice
from typing import Any, NamedTuple

from guardctl.bundled import data_text
from guardctl.fieldpaths import custom_columns, names_only
from guardctl.firewall import files, kubeyaml
from guardctl.model import KubectlCall, ManifestObject, ManifestReport, Risk, SimpleCommand

# The vocabulary rules can name in a `risks:` match. See the module docstring for what each means.
RISKS: frozenset[str] = frozenset(
    {
        "privileged",
        "hostPath",
        "hostNetwork",
        "hostPID",
        "hostIPC",
        "capabilities",
        "allowPrivilegeEscalation",
        "runAsRoot",
        "hostPort",
        "procMount",
        "seccompUnconfined",
        "apparmorUnconfined",
        "rbac-wildcard",
        "rbac-escalate",
        "rbac-bind",
        "rbac-impersonate",
        "rbac-secrets",
        "cluster-admin-binding",
        "rbac-token-create",
        "admission-webhook",
        "node-access",
        "pod-security-label",
        "node-scheduling",
        "zero-replicas",
        "service-account",
        "service-account-token",
        "unseen-manifest",
        "template-values",
    }
)

# outputs that print fields of a template (read in `_template_values`; a template in a file
# is not read, so it counts as printing values)
_TEMPLATE_FORMATS = frozenset({
    "jsonpath", "jsonpath-as-json", "go-template", "template", "jsonpath-file",
    "go-template-file", "templatefile", "custom-columns-file",
})

# Given a path and whether to recurse into folders: (file name, text) pairs, None if unreadable.
Reader = Callable[[str, bool], list[tuple[str, str]] | None]
# Given a kustomization folder (`-k DIR`): the manifests kubectl's kustomize renders from it
# (no plugins, no helm, no network), None when it cannot be rendered so.
Render = Callable[[str], str | None]

MAX_TEXT_BYTES = 10 * 1024 * 1024
# texts up to this size keep their report for the next line that names them
CACHED_TEXT = 64 * 1024
MAX_DOCUMENTS = 1000
# Distinct YAML nodes inspected per text. Aliases are walked once (see _Budget), so this only
# guards against pathological but alias-free inputs.
MAX_NODES = 1_000_000
# `kind: List` inside `kind: List` is legal; deeper nesting is only ever an attack.
MAX_LIST_DEPTH = 3

_YamlMap = Mapping[Any, Any]
# a key that is not there (None is a value: `labels: null` removes them)
_ABSENT = object()
POD_SECURITY_PREFIX = "pod-security.kubernetes.io/"
SERVICE_ACCOUNT_TOKEN = "kubernetes.io/service-account-token"
SERVICE_ACCOUNT_KEYS = ("serviceAccountName", "serviceAccount")


def _load_tables() -> dict[str, Any]:
    text = data_text("manifests.json")
    tables: dict[str, Any] = json.loads(text)
    return tables


class _Grant(NamedTuple):
    """An RBAC permission that is a risk: any of `verbs` on any (group, resource) pair."""

    risk: str
    verbs: frozenset[str]
    resources: tuple[tuple[str, str], ...]


_T = _load_tables()
_TRUE_IS_RISK: Mapping[str, str] = _T["true_is_risk"]
_UNCONFINED_PROFILES: Mapping[str, str] = _T["unconfined_profiles"]
_UNCONFINED_ANNOTATIONS: Mapping[str, str] = _T["unconfined_annotations"]
_NAMED_LISTS: Mapping[str, str] = _T["named_lists"]
_ADMISSION_KINDS: frozenset[str] = frozenset(_T["admission_kinds"])
_BINDING_KINDS: frozenset[str] = frozenset(_T["binding_kinds"])
_POWERFUL_ROLES: frozenset[str] = frozenset(_T["powerful_cluster_roles"])
_GRANTS: tuple[_Grant, ...] = tuple(
    _Grant(g["risk"], frozenset(g["verbs"]), tuple((grp, res) for grp, res in g["resources"]))
    for g in _T["rbac_grants"]
)
_RESOURCE_ALIASES: Mapping[str, str] = _T["resource_aliases"]
_DEBUG_PROFILES: Mapping[str, Risk] = {
    name: Risk(p["risk"], p["detail"]) for name, p in _T["debug_profiles"].items()
}
del _T


# --------------------------------------------------------------------------- reports


def _merge(reports: list[ManifestReport]) -> ManifestReport:
    """All reports in one, order kept, exact duplicates dropped."""
    return ManifestReport(
        objects=tuple(dict.fromkeys(o for r in reports for o in r.objects)),
        risks=tuple(dict.fromkeys(k for r in reports for k in r.risks)),
        unseen=tuple(dict.fromkeys(u for r in reports for u in r.unseen)),
    )


def _unseen(message: str) -> ManifestReport:
    return ManifestReport(risks=(Risk("unseen-manifest", message),), unseen=(message,))


# --------------------------------------------------------------------------- parsing


class _Unparseable(Exception):
    """A text that is not valid YAML/JSON, or whose parser gave up (nesting too deep)."""


def _documents(text: str) -> Iterator[object]:
    """Every document of a YAML stream or JSON stream, lazily; raises _Unparseable.

    Text whose first non-blank character is `{` is read as JSON, as kubectl does: JSON may be
    indented with tabs, which YAML forbids. YAML is read with kubectl's scalars (`kubeyaml`).
    """
    import yaml  # only lines that carry a manifest pay for the import

    try:
        if text.lstrip(" \t\r\n\ufeff").startswith("{"):
            yield from _json_documents(text.lstrip(" \t\r\n\ufeff"))
        else:
            yield from kubeyaml.load_all(text)
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        raise _Unparseable(str(exc)) from exc


def _json_documents(text: str) -> Iterator[object]:
    decoder = kubeyaml.json_decoder()
    pos = 0
    for _ in range(MAX_DOCUMENTS + 1):
        value, pos = decoder.raw_decode(text, pos)
        yield value
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            return


# --------------------------------------------------------------------------- pod risks


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _true_risk(key: str, value: object, where: str) -> list[Risk]:
    return [Risk(_TRUE_IS_RISK[key], f"{where}: {key}: true")] if value is True else []


def _profile_risk(key: str, value: object, where: str) -> list[Risk]:
    if isinstance(value, Mapping) and value.get("type") == "Unconfined":
        return [Risk(_UNCONFINED_PROFILES[key], f"{where}: {key}.type: Unconfined")]
    return []


def _capabilities(value: object, where: str) -> list[Risk]:
    added = value.get("add") if isinstance(value, Mapping) else None
    if not added:
        return []
    names = added if isinstance(added, list) else [added]
    return [Risk("capabilities", f"{where}: capabilities.add: {', '.join(map(str, names))}")]


def _run_as_user(value: object, where: str) -> list[Risk]:
    return [Risk("runAsRoot", f"{where}: runAsUser: 0")] if _is_int(value) and value == 0 else []


def _host_port(value: object, where: str) -> list[Risk]:
    return [Risk("hostPort", f"{where}: hostPort: {value}")] if _is_int(value) and value else []


def _proc_mount(value: object, where: str) -> list[Risk]:
    return [Risk("procMount", f"{where}: procMount: Unmasked")] if value == "Unmasked" else []


def _host_path(value: object, where: str) -> list[Risk]:
    # a string (a ConfigMap value, a label) is not the volume source, which is a mapping
    if not isinstance(value, Mapping):
        return []
    return [Risk("hostPath", f"{where}: hostPath {value.get('path')}")]


def _annotations(value: object, where: str) -> list[Risk]:
    """The pre-1.30 annotation spellings of AppArmor and seccomp profiles."""
    if not isinstance(value, Mapping):
        return []
    return [
        Risk(risk, f"{where}: annotation {key}: {text}")
        for key, text in value.items()
        if isinstance(text, str) and text.lower() == "unconfined"
        for prefix, risk in _UNCONFINED_ANNOTATIONS.items()
        if isinstance(key, str) and key.startswith(prefix)
    ]


_KEY_CHECKS: Mapping[str, Callable[[object, str], list[Risk]]] = {
    "capabilities": _capabilities,
    "runAsUser": _run_as_user,
    "hostPort": _host_port,
    "procMount": _proc_mount,
    "hostPath": _host_path,
    "annotations": _annotations,
}


def _key_risks(key: object, value: object, where: str) -> list[Risk]:
    if not isinstance(key, str):
        return []
    if key in _TRUE_IS_RISK:
        return _true_risk(key, value, where)
    if key in _UNCONFINED_PROFILES:
        return _profile_risk(key, value, where)
    check = _KEY_CHECKS.get(key)
    return check(value, where) if check else []


class _Budget:
    """Counts distinct nodes walked in one text.

    PyYAML builds an alias as a reference to the anchored node, so a "billion laughs" text is
    a small graph with a huge tree view. Walking each container once keeps the work linear in
    the text; a risk under an alias is still found at its first occurrence.
    """

    __slots__ = ("left", "seen", "exhausted")

    def __init__(self) -> None:
        self.left = MAX_NODES
        self.seen: set[int] = set()
        self.exhausted = False

    def visit(self, node: object) -> bool:
        if id(node) in self.seen or self.exhausted:
            return False
        self.left -= 1
        if self.left < 0:
            self.exhausted = True
            return False
        self.seen.add(id(node))
        return True


def _item_label(where: str, noun: str, item: object) -> str:
    name = item.get("name") if isinstance(item, Mapping) else None
    return f"{where} {noun} '{name}'" if isinstance(name, str) else f"{where} {noun}"


def _walk_risks(root: object, where: str, budget: _Budget, patch: bool = False) -> list[Risk]:
    """Risky keys anywhere under `root`; items of containers/volumes lists get their own label.
    In a `patch` (or an override), a ServiceAccount name is one too."""
    risks: list[Risk] = []
    stack: list[tuple[object, str]] = [(root, where)]
    while stack:
        node, label = stack.pop()
        if not isinstance(node, (Mapping, list)) or not budget.visit(node):
            continue
        if isinstance(node, list):
            stack.extend((item, label) for item in reversed(node))
            continue
        for key, value in node.items():
            risks.extend(_key_risks(key, value, label))
            if patch and key in SERVICE_ACCOUNT_KEYS:
                risks.append(Risk("service-account", f"{label}: {key}: {value}"))
        for key, value in reversed(list(node.items())):
            noun = _NAMED_LISTS.get(key) if isinstance(key, str) else None
            if noun and isinstance(value, list):
                stack.extend((item, _item_label(label, noun, item)) for item in reversed(value))
            else:
                stack.append((value, label))
    return risks


# --------------------------------------------------------------------------- RBAC and admission


_RULE_FIELDS = frozenset({"verbs", "resources", "apiGroups", "nonResourceURLs"})


def _words(value: object) -> frozenset[str] | None:
    """A rule's verbs/resources/apiGroups; None when missing (unknown: matches anything)."""
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    return frozenset(str(v) for v in items)


def _matches(allowed: frozenset[str] | None, wanted: str) -> bool:
    return allowed is None or "*" in allowed or wanted in allowed


def _resource_matches(allowed: frozenset[str] | None, wanted: str) -> bool:
    # RBAC spells subresource wildcards "*/token"
    sub = wanted.partition("/")[2]
    return _matches(allowed, wanted) or bool(sub and allowed and f"*/{sub}" in allowed)


def _grants(rule: _YamlMap, grant: _Grant) -> bool:
    verbs, groups = _words(rule.get("verbs")), _words(rule.get("apiGroups"))
    resources_ = _words(rule.get("resources"))
    if resources_ is None and "nonResourceURLs" in rule:
        return False  # a rule for URLs like /healthz grants nothing on resources
    return any(_matches(verbs, v) for v in grant.verbs) and any(
        _matches(groups, group) and _resource_matches(resources_, resource)
        for group, resource in grant.resources
    )


def _rule_risks(rule: object, where: str) -> list[Risk]:
    # a mapping without any rule field is not an RBAC rule (a CRD's own `rules`)
    if not isinstance(rule, Mapping) or not _RULE_FIELDS & rule.keys():
        return []
    shown = ", ".join(
        f"{key}={sorted(words)}"
        for key in ("apiGroups", "resources", "verbs")
        if (words := _words(rule.get(key))) is not None
    )
    wild = any("*" in (_words(rule.get(k)) or ()) for k in ("verbs", "resources", "apiGroups"))
    risks = [Risk("rbac-wildcard", f"{where}: rule {shown}")] if wild else []
    return risks + [Risk(g.risk, f"{where}: rule {shown}") for g in _GRANTS if _grants(rule, g)]


def _binding_risks(obj: _YamlMap, kind: str, where: str) -> list[Risk]:
    ref = obj.get("roleRef")
    if isinstance(ref, Mapping):
        role_kind, role = ref.get("kind"), ref.get("name")
        if role_kind in (None, "ClusterRole") and role in _POWERFUL_ROLES:
            return [Risk("cluster-admin-binding", f"{where}: binds ClusterRole {role}")]
        return []
    if "subjects" in obj and kind in _BINDING_KINDS | {""}:
        return [Risk("cluster-admin-binding", f"{where}: changes subjects of an unknown role")]
    return []


def _rbac_risks(obj: _YamlMap, kind: str, where: str) -> list[Risk]:
    """Top-level `rules`, `aggregationRule` and `roleRef`, whatever the kind says."""
    rules = obj.get("rules")
    risks = (
        [r for rule in rules for r in _rule_risks(rule, where)] if isinstance(rules, list) else []
    )
    if obj.get("aggregationRule") is not None:
        risks.append(Risk("rbac-wildcard", f"{where}: aggregationRule gathers unknown rules"))
    return risks + _binding_risks(obj, kind, where)


def _admission_risks(obj: _YamlMap, kind: str, where: str) -> list[Risk]:
    if kind in _ADMISSION_KINDS or (not kind and "webhooks" in obj):
        return [Risk("admission-webhook", f"{where}: {kind or 'webhooks'} intercepts API requests")]
    return []


# --------------------------------------------------------------------------- objects


def _text(value: object) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    return (
        value if isinstance(value, str) else str(value) if isinstance(value, (int, float)) else None
    )


def _describe(obj: _YamlMap) -> ManifestObject:
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    return ManifestObject(
        kind=_text(obj.get("kind")) or "",
        api_version=_text(obj.get("apiVersion")) or "",
        name=_text(meta.get("name")),
        namespace=_text(meta.get("namespace")),
    )


def _body_risks(
    obj: _YamlMap, kind: str, where: str, budget: _Budget, patch: bool = False
) -> list[Risk]:
    """Every risk of one object or patch body of `kind` ("" when unknown)."""
    return (
        _walk_risks(obj, where, budget, patch)
        + _rbac_risks(obj, kind, where)
        + _admission_risks(obj, kind, where)
        + _change_risks(obj, kind, where, patch)
    )


def _mapping(node: object, key: str) -> object:
    return node.get(key, _ABSENT) if isinstance(node, Mapping) else _ABSENT


def _pod_security_risks(obj: _YamlMap, where: str, patch: bool) -> list[Risk]:
    meta = _mapping(obj, "metadata")
    labels = _mapping(meta, "labels")
    if isinstance(labels, Mapping):
        named = [k for k in labels if isinstance(k, str) and k.startswith(POD_SECURITY_PREFIX)]
        if named:
            return [Risk("pod-security-label", f"{where}: label {named[0]}")]
        if patch and "$patch" in labels:
            return [Risk("pod-security-label", f"{where}: $patch on the labels")]
        return []
    if patch and (meta is None or labels is not _ABSENT):  # null, or not a mapping
        return [Risk("pod-security-label", f"{where}: removes or replaces the labels")]
    return []


def _change_risks(
    obj: _YamlMap, kind: str, where: str, patch: bool = False
) -> list[Risk]:
    """Risks of what a body changes on Namespaces, Nodes and workloads (see RISKS)."""
    risks: list[Risk] = []
    if kind in ("Namespace", ""):
        risks += _pod_security_risks(obj, where, patch)
    spec = _mapping(obj, "spec")
    if kind in ("Node", "") and isinstance(spec, Mapping):
        if spec.get("unschedulable") is True:
            risks.append(Risk("node-scheduling", f"{where}: spec.unschedulable: true"))
        if "taints" in spec and (patch or spec["taints"]):
            risks.append(Risk("node-scheduling", f"{where}: spec.taints"))
    if isinstance(spec, Mapping) and _is_int(spec.get("replicas")) and spec["replicas"] == 0:
        risks.append(Risk("zero-replicas", f"{where}: spec.replicas: 0"))
    if kind in ("Secret", "") and obj.get("type") == SERVICE_ACCOUNT_TOKEN:
        risks.append(Risk("service-account-token", f"{where}: type {SERVICE_ACCOUNT_TOKEN}"))
    return risks


def _inspect_object(obj: _YamlMap, budget: _Budget, patch: bool = False) -> ManifestReport:
    found = _describe(obj)
    where = f"{found.kind}/{found.name}" if found.name else found.kind
    return ManifestReport(
        objects=(found,), risks=tuple(_body_risks(obj, found.kind, where, budget, patch))
    )


def _is_list(obj: _YamlMap) -> bool:
    kind = obj.get("kind")
    return isinstance(kind, str) and kind.endswith("List") and isinstance(obj.get("items"), list)


def _flatten(doc: object, depth: int = 0) -> Iterator[object]:
    """The objects of one document: itself, or the items of a List (nested Lists bounded)."""
    if isinstance(doc, Mapping) and _is_list(doc) and depth < MAX_LIST_DEPTH:
        for item in doc["items"]:
            yield from _flatten(item, depth + 1)
    else:
        yield doc


def _inspect_documents(docs: Iterator[object], source: str, budget: _Budget) -> ManifestReport:
    reports: list[ManifestReport] = []
    objects = (obj for doc in docs if doc is not None for obj in _flatten(doc))
    for number, obj in enumerate(islice(objects, MAX_DOCUMENTS + 1), start=1):
        if number > MAX_DOCUMENTS:
            reports.append(_unseen(f"{source}: more than {MAX_DOCUMENTS} objects"))
        elif (
            not isinstance(obj, Mapping) or not isinstance(obj.get("kind"), str) or not obj["kind"]
        ):
            reports.append(_unseen(f"{source}: object {number} is not a mapping with a kind"))
        else:
            reports.append(_inspect_object(obj, budget))
    return _merge(reports)


def _too_big(text: str) -> bool:
    return len(text) > MAX_TEXT_BYTES or len(text.encode("utf-8", "replace")) > MAX_TEXT_BYTES


def _exhausted(budget: _Budget, source: str) -> list[ManifestReport]:
    return [_unseen(f"{source}: too large to inspect")] if budget.exhausted else []


def inspect_text(text: str, source: str) -> ManifestReport:
    """The objects and risks of a YAML or JSON manifest text (multi-document, Lists).

    Fails closed: a text that does not parse, a document without a kind, more than
    MAX_DOCUMENTS objects or more than MAX_TEXT_BYTES give an `unseen` entry and the
    "unseen-manifest" risk, next to whatever was found before the problem.

    >>> inspect_text("kind: Namespace\\nmetadata: {name: prod}\\n", "ns.yaml").objects
    (ManifestObject(kind='Namespace', api_version='', name='prod', namespace=None),)
    """
    if len(text) <= CACHED_TEXT:  # `check --batch` meets the same files again and again
        return _inspect_text_cached(text, source)
    return _inspect_text(text, source)


@lru_cache(maxsize=64)
def _inspect_text_cached(text: str, source: str) -> ManifestReport:
    return _inspect_text(text, source)


def _inspect_text(text: str, source: str) -> ManifestReport:
    if _too_big(text):
        return _unseen(f"{source}: larger than {MAX_TEXT_BYTES} bytes")
    budget = _Budget()
    docs: list[object] = []
    problems: list[ManifestReport] = []
    try:
        for doc in islice(_documents(text), MAX_DOCUMENTS + 1):
            docs.append(doc)
    except _Unparseable:
        problems.append(_unseen(f"{source}: not valid YAML/JSON"))
    if len(docs) > MAX_DOCUMENTS:
        problems.append(_unseen(f"{source}: more than {MAX_DOCUMENTS} documents"))
    # left to right: the walk must run before the budget is asked whether it ran out
    found = _inspect_documents(iter(docs[:MAX_DOCUMENTS]), source, budget)
    return _merge([found, *problems, *_exhausted(budget, source)])


# --------------------------------------------------------------------------- patches and overrides


def _parse_one(body: str, source: str) -> tuple[object, ManifestReport | None]:
    """The single document of a patch or override body, or an unseen report."""
    if _too_big(body):
        return None, _unseen(f"{source}: larger than {MAX_TEXT_BYTES} bytes")
    try:
        docs = list(islice(_documents(body), 2))
    except _Unparseable:
        return None, _unseen(f"{source}: not valid YAML/JSON")
    if len(docs) != 1:
        return None, _unseen(f"{source}: not exactly one YAML/JSON document")
    return docs[0], None


def _pointer(path: str) -> list[str]:
    """RFC 6901 JSON pointer segments ("" is the whole document)."""
    if not path:
        return []
    return [seg.replace("~1", "/").replace("~0", "~") for seg in path.split("/")[1:]]


def _place(path: str, value: object) -> object:
    """`value` nested under the segments of `path`, so a fragment is seen in its context.

    `/spec/template/spec/volumes/-` with a volume becomes `{"spec": {"template": {"spec":
    {"volumes": [volume]}}}}`, which the walker reads like a strategic patch.
    """
    node = value
    for seg in reversed(_pointer(path)):
        node = [node] if seg == "-" or seg.isdigit() else {seg: node}
    return node


def _json_patch(ops: object, target_kind: str, where: str, budget: _Budget) -> list[ManifestReport]:
    if not isinstance(ops, list):
        return [_unseen(f"{where}: a JSON patch must be a list of operations")]
    reports: list[ManifestReport] = []
    for op in ops:
        if not isinstance(op, Mapping) or not isinstance(op.get("path"), str):
            reports.append(_unseen(f"{where}: a JSON patch operation without a path"))
        elif op.get("op") in ("move", "copy"):
            # the moved value is whatever the live object holds there: not in the line
            reports.append(_unseen(f"{where}: {op.get('op')} to {op['path']} of an unknown value"))
        elif op.get("op") in ("add", "replace", "remove"):
            reports.append(_json_patch_op(op, target_kind, f"{where} {op['path']}", budget))
    return reports


def _json_patch_op(
    op: Mapping[str, Any], target_kind: str, label: str, budget: _Budget
) -> ManifestReport:
    """One add, replace or remove, seen as the merge patch that would do the same."""
    path = op["path"]
    risks: list[Risk] = []
    if target_kind in ("Namespace", "") and path in ("", "/metadata", "/metadata/labels"):
        risks.append(Risk("pod-security-label", f"{label}: replaces or removes the labels"))
    if op["op"] == "remove":
        body = _place(path, None)
        if isinstance(body, Mapping):
            risks += _change_risks(body, target_kind, label, patch=True)
    else:
        body = _place(path, op.get("value"))
        if isinstance(body, Mapping):
            risks += _body_risks(body, target_kind, label, budget, patch=True)
    return ManifestReport(risks=tuple(risks))


def inspect_patch(body: str, patch_type: str, target_kind: str) -> ManifestReport:
    """The risks of a `kubectl patch` body of type strategic, merge or json.

    `target_kind` is the patched object's kind ("" when unknown). Risky keys are searched
    everywhere in the body, so the kind only matters for RBAC and admission objects.

    >>> inspect_patch('{"spec": {"hostNetwork": true}}', "merge", "Pod").risks
    (Risk(name='hostNetwork', detail='patch on Pod: hostNetwork: true'),)
    """
    where = f"patch on {target_kind or 'an unknown kind'}"
    doc, problem = _parse_one(body, where)
    if problem:
        return problem
    budget = _Budget()
    if patch_type == "json":
        reports = _json_patch(doc, target_kind, where, budget)
    elif patch_type in ("strategic", "merge") and isinstance(doc, Mapping):
        risks = _body_risks(doc, target_kind, where, budget, patch=True)
        reports = [ManifestReport(risks=tuple(risks))]
    else:
        reports = [_unseen(f"{where}: not a {patch_type} patch mapping")]
    return _merge(reports + _exhausted(budget, where))


def inspect_overrides(body: str, kind: str = "Pod") -> ManifestReport:
    """The objects and risks of a `kubectl run --overrides` JSON body.

    The override is merged into the generated object, and may even change its kind, so it is
    inspected like a whole object of `kind` unless it names its own.
    """
    where = "--overrides"
    doc, problem = _parse_one(body, where)
    if problem:
        return problem
    if not isinstance(doc, Mapping):
        return _unseen(f"{where}: not a JSON object")
    whole = doc if isinstance(doc.get("kind"), str) and doc["kind"] else {**doc, "kind": kind}
    budget = _Budget()
    return _merge([_inspect_object(whole, budget, patch=True), *_exhausted(budget, where)])


# --------------------------------------------------------------------------- kubectl calls


def _as_kubectl_reads(read: Reader, cmd: SimpleCommand) -> Reader:
    """`read` for the file kubectl opens: a `~` the shell did not expand (quoted, or after
    `--flag=`) is a folder named `~` to kubectl, which expands nothing itself."""
    def literal(path: str, recursive: bool) -> list[tuple[str, str]] | None:
        return read(kubectl_path(path, cmd), recursive)

    return literal


def kubectl_path(path: str, cmd: SimpleCommand) -> str:
    """The path kubectl opens for a path `cmd` names: a `~` the shell did not expand is a
    folder named `~`."""
    if not path.startswith("~"):
        return path
    expanded = any(cmd.argv[i] == path for i in cmd.tilde if i < len(cmd.argv))
    return path if expanded else "./" + path


def _read(read: Reader, path: str, recursive: bool, shown: str) -> ManifestReport:
    found = read(path, recursive)
    if found is None:
        return _unseen(f"{shown}: cannot be read")
    return _merge([inspect_text(text, name) for name, text in found])


def _stdin(cmd: SimpleCommand, read: Reader, render: Render | None) -> ManifestReport:
    if cmd.stdin_from == "kustomize" and cmd.stdin is not None:
        return _kustomization(cmd.stdin, cmd, render)
    if cmd.stdin_from in ("heredoc", "herestring") and cmd.stdin is not None:
        return inspect_text(cmd.stdin, f"-f - ({cmd.stdin_from})")
    if cmd.stdin_from == "file" and cmd.stdin is not None:
        return _read(read, cmd.stdin, False, f"-f - < {cmd.stdin}")
    return _unseen(f"-f - from {cmd.stdin_from}: the manifest is not in the line")


def _filenames(
    call: KubectlCall, cmd: SimpleCommand, read: Reader, render: Render | None
) -> list[ManifestReport]:
    recursive = call.flag("recursive") == "true"
    reports: list[ManifestReport] = []
    for value in call.flags.get("filename", ()):
        if value == "-":
            reports.append(_stdin(cmd, read, render))
        elif value.lower().startswith(("http://", "https://")):
            reports.append(_unseen(f"-f {value}: remote manifests are not fetched"))
        else:
            reports.append(_read(read, value, recursive, f"-f {value}"))
    reports.extend(_kustomization(value, cmd, render) for value in call.flags.get("kustomize", ()))
    if call.flag("edit") == "true":
        reports.append(_unseen("--edit: the manifest is changed in an editor"))
    return reports


def _kustomization(value: str, cmd: SimpleCommand, render: Render | None) -> ManifestReport:
    """`-k DIR`, decided on what kubectl's kustomize renders from it."""
    if render is None:
        return _unseen(f"-k {value}: kustomize output is only known when rendered")
    if "://" in value or value.startswith(("git@", "github.com/", "gitlab.com/")):
        return _unseen(f"-k {value}: remote kustomizations are not fetched")
    rendered = render(kubectl_path(value, cmd))
    if rendered is None:
        return _unseen(
            f"-k {value}: cannot be rendered here (kubectl's kustomize failed, or needs "
            "remote bases, plugins or helm)"
        )
    return inspect_text(rendered, f"-k {value} (rendered)")


def _patches(call: KubectlCall, read: Reader) -> list[ManifestReport]:
    patch_type = call.flag("type") or "strategic"
    kinds = [ref.kind for ref in call.resources] or [""]
    bodies = [*call.flags.get("patch", ())]
    unread: list[ManifestReport] = []
    for path in call.flags.get("patch-file", ()):
        found = read(path, False)
        if found is None or len(found) != 1:
            unread.append(_unseen(f"--patch-file {path}: cannot be read"))
        else:
            bodies.append(found[0][1])
    return unread + [inspect_patch(body, patch_type, kind) for body in bodies for kind in kinds]


def _debug(call: KubectlCall, read: Reader) -> list[ManifestReport]:
    risks: list[Risk] = []
    nodes = [ref.name or "" for ref in call.resources if ref.resource == "nodes"]
    nodes += [arg.partition("/")[2] for arg in call.args if arg.startswith(("node/", "nodes/"))]
    risks += [
        Risk("node-access", f"debug node/{node} runs a pod in the node's namespaces")
        for node in dict.fromkeys(nodes)
    ]
    profile = _DEBUG_PROFILES.get(call.flag("profile") or "")
    risks += [profile] if profile else []
    reports = [ManifestReport(risks=tuple(risks))]
    # --custom is a partial container spec, read like a manifest body
    for path in call.flags.get("custom", ()):
        found = read(path, False)
        body = found[0][1] if found and len(found) == 1 else None
        reports.append(
            _unseen(f"--custom {path}: cannot be read")
            if body is None
            else inspect_patch(body, "merge", "Container")
        )
    return reports


def _split_resource(value: str) -> tuple[str | None, str]:
    """`deployments.apps/scale` -> ("apps", "deployments/scale"); no group -> None (any)."""
    base, slash, sub = value.partition("/")
    name, dot, group = base.partition(".")
    name = _RESOURCE_ALIASES.get(name, name)
    return (group if dot else None), name + slash + sub


def _flag_words(call: KubectlCall, name: str) -> list[str]:
    return [w.strip() for v in call.flags.get(name, ()) for w in v.split(",") if w.strip()]


def _create_role(call: KubectlCall) -> list[Risk]:
    """`create role|clusterrole --verb --resource` as the RBAC rules kubectl would build."""
    where = f"{call.verb} {' '.join(call.args)}".strip()
    verbs = _flag_words(call, "verb")
    rules: list[dict[str, object]] = []
    for value in _flag_words(call, "resource"):
        group, resource = _split_resource(value)
        rules.append(
            {
                "verbs": verbs,
                "resources": [resource],
                **({"apiGroups": [group]} if group is not None else {}),
            }
        )
    if _flag_words(call, "non-resource-url"):
        rules.append({"verbs": verbs, "nonResourceURLs": _flag_words(call, "non-resource-url")})
    risks = [r for rule in rules for r in _rule_risks(rule, where)]
    if call.flag("aggregation-rule"):
        risks.append(Risk("rbac-wildcard", f"{where}: aggregationRule gathers unknown rules"))
    return risks


def _template_values(call: KubectlCall) -> list[Risk]:
    """A template output (`-o jsonpath=…`, go-template, custom-columns, `--template`) that
    prints more than what names objects: field values, bare (see `fieldpaths`)."""
    output, _, body = (call.flag("output") or "").partition("=")
    if call.has_flag("template") and output in ("", "go-template", "jsonpath", "template"):
        output, body = output or "go-template", body or call.flag("template") or ""
    if output == "custom-columns":
        columns = custom_columns(body)
        safe = columns is not None and all(names for _, names in columns)
    elif output in _TEMPLATE_FORMATS:
        safe = names_only(output, body)
    else:
        return []
    return [] if safe else [Risk("template-values", f"-o {output} prints field values")]


def _flag_risks(call: KubectlCall) -> list[Risk]:
    """Risks that flags alone carry, without any manifest."""
    if call.verb in ("get", "config view"):
        return _template_values(call)
    verb = call.verb
    if verb in ("create role", "create clusterrole"):
        return _create_role(call)
    if verb in ("create rolebinding", "create clusterrolebinding"):
        role = call.flag("clusterrole")
        return (
            [Risk("cluster-admin-binding", f"{verb}: binds ClusterRole {role}")]
            if (role in _POWERFUL_ROLES)
            else []
        )
    if verb == "set subject":
        return [Risk("cluster-admin-binding", "set subject: changes subjects of an unknown role")]
    if verb == "run" and call.flag("privileged") == "true":
        return [Risk("privileged", "run --privileged")]
    return []


def inspect_call(
    call: KubectlCall,
    cmd: SimpleCommand,
    read: Reader = files.read_manifests,
    render: Render | None = None,
) -> ManifestReport:
    """Everything the manifests and risky flags of one kubectl call would do.

    `cmd` is the shell command the call came from (its stdin feeds `-f -`); `read` reads
    `-f` files and folders, `--patch-file` and `--custom` (a test passes a dict lookup);
    `render` renders `-k` kustomizations (None: they count as unseen).
    """
    read = _as_kubectl_reads(read, cmd)
    reports = _filenames(call, cmd, read, render)
    if call.verb == "diff":
        # a server-side dry run compared with the live objects: whatever the files hold and
        # whether they can be read (kubectl says so itself), nothing changes
        merged = _merge(reports)
        return ManifestReport(objects=merged.objects)
    reports += [inspect_overrides(body) for body in call.flags.get("overrides", ())]
    if call.has_flag("patch") or call.has_flag("patch-file"):
        reports += _patches(call, read)
    if call.verb == "debug":
        reports += _debug(call, read)
    reports.append(ManifestReport(risks=tuple(_flag_risks(call))))
    report = _merge(reports)
    if call.verb == "replace" and any(o.kind == "Namespace" for o in report.objects):
        # the object replaces the live one whole: labels it does not carry are dropped
        drop = Risk("pod-security-label", "replace of a Namespace drops labels it does not carry")
        report = report._replace(risks=(*report.risks, drop))
    return report
