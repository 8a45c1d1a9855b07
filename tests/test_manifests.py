"""Tests for guardctl.firewall.manifests (what manifests would do) and guardctl.firewall.files
(reading them)."""

from __future__ import annotations

import json
import os
import time
from importlib import resources
from pathlib import Path

import pytest

from guardctl.firewall import files, manifests
from guardctl.firewall.manifests import (
    RISKS,
    inspect_call,
    inspect_overrides,
    inspect_patch,
    inspect_text,
)
from guardctl.model import KubectlCall, ManifestObject, ManifestReport, ResourceRef, SimpleCommand

DATA = Path(__file__).parent / "data" / "manifests"


def fixture(name: str) -> str:
    return (DATA / name).read_text("utf-8")


def names(report: ManifestReport) -> set[str]:
    return {risk.name for risk in report.risks}


def kinds(report: ManifestReport) -> list[str]:
    return [obj.kind for obj in report.objects]


# --------------------------------------------------------------------------- inspect_text

FIXTURES = [
    # (file, risk names, object kinds, unseen expected)
    ("nginx-deployment.yaml", set(), ["Deployment"], False),
    ("pod-privileged.yaml", {"privileged"}, ["Pod"], False),
    ("pod-hostpath-init.yaml", {"hostPath"}, ["Pod"], False),
    ("pod-ephemeral.yaml", {"allowPrivilegeEscalation", "procMount"}, ["Pod"], False),
    ("pod-unconfined.yaml", {"apparmorUnconfined", "seccompUnconfined"}, ["Pod"], False),
    ("cronjob-hostpid.yaml", {"hostPID"}, ["CronJob"], False),
    ("daemonset-hostnetwork.yaml", {"hostNetwork", "hostPort"}, ["DaemonSet"], False),
    ("statefulset-capabilities.yaml", {"capabilities"}, ["StatefulSet"], False),
    ("replicaset-hostipc.yaml", {"hostIPC"}, ["ReplicaSet"], False),
    ("replicationcontroller-root.yaml", {"runAsRoot"}, ["ReplicationController"], False),
    ("job-runasnonroot-false.yaml", set(), ["Job"], False),
    ("podtemplate-privileged.yaml", {"privileged"}, ["PodTemplate"], False),
    ("rollout-crd.yaml", {"privileged"}, ["Rollout"], False),
    ("list.json", {"hostNetwork"}, ["Namespace", "Pod"], False),
    ("podlist.yaml", set(), ["Pod"], False),
    ("namespace.yaml", set(), ["Namespace"], False),
    (
        "clusterrole-wildcard.yaml",
        {
            "rbac-wildcard",
            "rbac-secrets",
            "rbac-escalate",
            "rbac-bind",
            "rbac-impersonate",
            "rbac-token-create",
        },
        ["ClusterRole"],
        False,
    ),
    ("role-secrets.yaml", {"rbac-secrets"}, ["Role"], False),
    ("role-pods-read.yaml", set(), ["Role"], False),
    (
        "clusterrole-escalation.yaml",
        {"rbac-escalate", "rbac-bind", "rbac-impersonate", "rbac-token-create"},
        ["ClusterRole"],
        False,
    ),
    ("clusterrole-aggregation.yaml", {"rbac-wildcard"}, ["ClusterRole"], False),
    ("crb-cluster-admin.yaml", {"cluster-admin-binding"}, ["ClusterRoleBinding"], False),
    ("rb-view.yaml", set(), ["RoleBinding"], False),
    (
        "webhooks.yaml",
        {"admission-webhook"},
        [
            "ValidatingWebhookConfiguration",
            "MutatingWebhookConfiguration",
            "ValidatingAdmissionPolicy",
        ],
        False,
    ),
    # the good document before the bad one is still reported
    ("multi-bad.yaml", {"unseen-manifest"}, ["Namespace"], True),
    # a Secret's string values are not pod fields; the kindless and list documents are unseen
    ("multi-nokind.yaml", {"unseen-manifest"}, ["Secret"], True),
    ("garbage.yaml", {"unseen-manifest"}, [], True),
]


@pytest.mark.parametrize(("file", "risks", "objects", "unseen"), FIXTURES)
def test_inspect_text_fixtures(
    file: str, risks: set[str], objects: list[str], unseen: bool
) -> None:
    report = inspect_text(fixture(file), file)
    assert names(report) == risks
    assert kinds(report) == objects
    assert bool(report.unseen) is unseen


@pytest.mark.parametrize(
    ("file", "detail"),
    [
        ("pod-privileged.yaml", "Pod/root-shell container 'shell': privileged: true"),
        ("pod-hostpath-init.yaml", "Pod/loader volume 'host-etc': hostPath /etc"),
        ("pod-ephemeral.yaml", "Pod/debugged ephemeral container 'dbg': procMount: Unmasked"),
        (
            "statefulset-capabilities.yaml",
            "StatefulSet/db container 'db': capabilities.add: SYS_ADMIN, NET_ADMIN",
        ),
        ("cronjob-hostpid.yaml", "CronJob/nightly: hostPID: true"),
        ("daemonset-hostnetwork.yaml", "DaemonSet/agent container 'agent': hostPort: 9100"),
        (
            "crb-cluster-admin.yaml",
            "ClusterRoleBinding/agent-admin: binds ClusterRole cluster-admin",
        ),
        ("garbage.yaml", "garbage.yaml: not valid YAML/JSON"),
    ],
)
def test_risk_detail_names_object_and_container(file: str, detail: str) -> None:
    assert detail in [risk.detail for risk in inspect_text(fixture(file), file).risks]


def test_objects_carry_name_namespace_and_api_version() -> None:
    report = inspect_text(fixture("list.json"), "list.json")
    assert report.objects == (
        ManifestObject("Namespace", "v1", "prod", None),
        ManifestObject("Pod", "v1", "net", "prod"),
    )


@pytest.mark.parametrize(
    ("text", "risks"),
    [
        ("kind: Pod\nspec: {hostNetwork: false, hostPID: false, hostIPC: false}", set()),
        ("kind: Pod\nspec: {securityContext: {runAsUser: 1000}}", set()),
        # YAML false is not the integer 0
        ("kind: Pod\nspec: {securityContext: {runAsUser: false}}", set()),
        ("kind: Pod\nspec: {securityContext: {runAsUser: 0}}", {"runAsRoot"}),
        ("kind: Pod\nspec: {containers: [{name: a, ports: [{hostPort: 0}]}]}", set()),
        (
            "kind: Pod\nspec: {containers: [{name: a, securityContext: {capabilities: {add: []}}}]}"
            "\n",
            set(),
        ),
        (
            "kind: Pod\nspec: {containers: [{name: a, securityContext: {procMount: Default}}]}",
            set(),
        ),
        # a label named like a field is a string, not the boolean field
        ("kind: Pod\nmetadata: {labels: {privileged: 'true'}}", set()),
        ('{"kind": "Pod", "spec": {"hostPID": true}}', {"hostPID"}),
        ('{"kind": "Namespace"}\n{"kind": "Pod", "spec": {"hostIPC": true}}', {"hostIPC"}),
    ],
)
def test_inspect_text_edges(text: str, risks: set[str]) -> None:
    assert names(inspect_text(text, "t")) == risks


def test_empty_text_has_nothing() -> None:
    assert inspect_text("", "empty") == ManifestReport()


def test_too_many_documents_is_unseen() -> None:
    text = "kind: ConfigMap\n---\n" * (manifests.MAX_DOCUMENTS + 5)
    report = inspect_text(text, "many.yaml")
    assert len(report.objects) == 1  # identical objects collapse
    assert report.unseen == (f"many.yaml: more than {manifests.MAX_DOCUMENTS} documents",)


@pytest.mark.parametrize(
    ("text", "unseen"),
    [
        # empty documents count too: nothing after the limit is read
        ("---\n" * 2000 + "kind: Pod\nspec: {hostPID: true}\n", "documents"),
        ("kind: List\nitems:\n" + "  - {kind: ConfigMap}\n" * 1001, "objects"),
    ],
)
def test_documents_beyond_the_limit_are_unseen(text: str, unseen: str) -> None:
    report = inspect_text(text, "t")
    assert report.unseen == (f"t: more than {manifests.MAX_DOCUMENTS} {unseen}",)
    assert "hostPID" not in names(report)


def test_too_large_text_is_unseen() -> None:
    text = "kind: ConfigMap\ndata: {a: '" + "x" * manifests.MAX_TEXT_BYTES + "'}\n"
    report = inspect_text(text, "big.yaml")
    assert report.objects == ()
    assert "unseen-manifest" in names(report)


def test_alias_bomb_stays_fast_and_still_finds_risks() -> None:
    lines = ["a: &a [{securityContext: {privileged: true}}]"]
    lines += [
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]" for i in range(9)
    ]
    text = "kind: Pod\n" + "\n".join(lines) + "\n"
    start = time.monotonic()
    report = inspect_text(text, "bomb.yaml")
    assert time.monotonic() - start < 2
    assert names(report) == {"privileged"}


@pytest.mark.parametrize("text", ["[" * 3000 + "]" * 3000, "{" * 3000, "a:\n" + "  - " * 3000])
def test_deep_nesting_fails_closed(text: str) -> None:
    report = inspect_text(text, "deep")
    assert "unseen-manifest" in names(report)


def test_node_budget_exhaustion_is_unseen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manifests, "MAX_NODES", 5)
    report = inspect_text(fixture("nginx-deployment.yaml"), "web.yaml")
    assert report.unseen == ("web.yaml: too large to inspect",)


# --------------------------------------------------------------------------- inspect_patch

JSON_PRIV = '[{"op": "add", "path": "/spec/template/spec/containers/0/securityContext/privileged", "value": true}]'  # noqa: E501

PATCHES = [
    # (body, type, target kind, risk names)
    (JSON_PRIV, "json", "Deployment", {"privileged"}),
    (
        '[{"op": "replace", "path": "/spec/hostNetwork", "value": true}]',
        "json",
        "Pod",
        {"hostNetwork"},
    ),
    ('[{"op": "replace", "path": "/spec/hostNetwork", "value": false}]', "json", "Pod", set()),
    ('[{"op": "test", "path": "/spec/hostNetwork", "value": true}]', "json", "Pod", set()),
    ('[{"op": "remove", "path": "/spec/template/spec/hostNetwork"}]', "json", "Deployment", set()),
    (
        '[{"op": "add", "path": "/spec/template/spec/volumes/-", '
        '"value": {"name": "root", "hostPath": {"path": "/"}}}]',
        "json",
        "Deployment",
        {"hostPath"},
    ),
    (
        '[{"op": "add", "path": "/spec/containers/-", "value": {"name": "x", "image": "y", '
        '"securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}}]',
        "json",
        "Pod",
        {"capabilities"},
    ),
    (
        '[{"op": "add", "path": "/spec/template/spec", "value": {"hostPID": true, '
        '"containers": []}}]',
        "json",
        "Deployment",
        {"hostPID"},
    ),
    (
        '[{"op": "add", "path": "/rules/-", "value": {"apiGroups": [""], "resources": ["secrets"], '
        '"verbs": ["list"]}}]',
        "json",
        "ClusterRole",
        {"rbac-secrets"},
    ),
    (
        '[{"op": "add", "path": "/subjects/-", "value": {"kind": "User", "name": "me"}}]',
        "json",
        "ClusterRoleBinding",
        {"cluster-admin-binding"},
    ),
    ('[{"op": "copy", "from": "/spec/a", "path": "/spec/b"}]', "json", "Pod", {"unseen-manifest"}),
    ('{"op": "add"}', "json", "Pod", {"unseen-manifest"}),
    ('[{"op": "add", "value": 1}]', "json", "Pod", {"unseen-manifest"}),
    # strategic merge patch: adding a hostPath volume to a Deployment
    (
        "spec:\n  template:\n    spec:\n      volumes:\n        - name: sock\n"
        "          hostPath: {path: /var/run/docker.sock}\n",
        "strategic",
        "Deployment",
        {"hostPath"},
    ),
    (
        '{"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:2"}]}}}}',
        "strategic",
        "Deployment",
        set(),
    ),
    ('{"metadata": {"labels": {"a": "b"}}}', "merge", "Deployment", set()),
    ('{"spec": {"securityContext": {"runAsUser": 0}}}', "merge", "", {"runAsRoot"}),
    (
        '{"webhooks": [{"name": "w"}]}',
        "merge",
        "ValidatingWebhookConfiguration",
        {"admission-webhook"},
    ),
    ('{"webhooks": [{"name": "w"}]}', "merge", "", {"admission-webhook"}),
    ("not: [valid", "strategic", "Pod", {"unseen-manifest"}),
    ("[1, 2]", "merge", "Pod", {"unseen-manifest"}),
    ("a: 1\n---\nb: 2\n", "merge", "Pod", {"unseen-manifest"}),
]


@pytest.mark.parametrize(("body", "patch_type", "kind", "risks"), PATCHES)
def test_inspect_patch(body: str, patch_type: str, kind: str, risks: set[str]) -> None:
    assert names(inspect_patch(body, patch_type, kind)) == risks


def test_json_patch_detail_names_the_path() -> None:
    (risk,) = inspect_patch(JSON_PRIV, "json", "Deployment").risks
    assert risk.detail.startswith(
        "patch on Deployment /spec/template/spec/containers/0/securityContext/privileged"
    )


def test_json_pointer_escapes() -> None:
    body = '[{"op": "add", "path": "/metadata/annotations/seccomp.security.alpha.kubernetes.io~1pod", "value": "unconfined"}]'  # noqa: E501
    assert names(inspect_patch(body, "json", "Pod")) == {"seccompUnconfined"}


# --------------------------------------------------------------------------- inspect_overrides


@pytest.mark.parametrize(
    ("body", "risks", "objects"),
    [
        (
            '{"spec": {"hostPID": true, "containers": [{"name": "x", "image": "y", '
            '"securityContext": {"privileged": true}}]}}',
            {"hostPID", "privileged"},
            ["Pod"],
        ),
        ('{"spec": {"serviceAccountName": "debug"}}', {"service-account"}, ["Pod"]),
        (
            '{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", '
            '"roleRef": {"kind": "ClusterRole", "name": "cluster-admin"}}',
            {"cluster-admin-binding"},
            ["ClusterRoleBinding"],
        ),
        ("{not json", {"unseen-manifest"}, []),
        ('"a string"', {"unseen-manifest"}, []),
    ],
)
def test_inspect_overrides(body: str, risks: set[str], objects: list[str]) -> None:
    report = inspect_overrides(body)
    assert names(report) == risks
    assert kinds(report) == objects


# --------------------------------------------------------------------------- inspect_call


class FakeReader:
    """A Reader over a dict that records what it was asked for."""

    def __init__(self, tree: dict[str, list[tuple[str, str]]]) -> None:
        self.tree = tree
        self.calls: list[tuple[str, bool]] = []

    def __call__(self, path: str, recursive: bool) -> list[tuple[str, str]] | None:
        self.calls.append((path, recursive))
        return self.tree.get(path)


READER = FakeReader(
    {
        "pod.yaml": [("pod.yaml", fixture("pod-privileged.yaml"))],
        "ns.yaml": [("ns.yaml", fixture("namespace.yaml"))],
        "dir": [("dir/a.yaml", fixture("namespace.yaml")), ("dir/b.yaml", fixture("rb-view.yaml"))],
        "patch.yaml": [("patch.yaml", '{"spec": {"hostIPC": true}}')],
        "custom.json": [("custom.json", '{"securityContext": {"capabilities": {"add": ["ALL"]}}}')],
    }
)


def call(
    verb: str,
    flags: dict[str, tuple[str, ...]] | None = None,
    resources: tuple[ResourceRef, ...] = (),
    args: tuple[str, ...] = (),
) -> KubectlCall:
    argv = ("kubectl", *verb.split(), *args)
    return KubectlCall(argv, verb, resources=resources, flags=flags or {}, args=args)


NO_STDIN = SimpleCommand(argv=("kubectl",))
HEREDOC = SimpleCommand(
    argv=("kubectl",), stdin_from="heredoc", stdin=fixture("pod-privileged.yaml")
)
DEPLOY = ResourceRef("deployments", "apps", "Deployment", name="web")
NODE = ResourceRef("nodes", "", "Node", namespaced=False, name="worker-1")
CRB = ResourceRef("clusterrolebindings", "rbac.authorization.k8s.io", "ClusterRoleBinding")

CALLS = [
    # (call, cmd, risk names, object kinds)
    (call("apply", {"filename": ("pod.yaml",)}), NO_STDIN, {"privileged"}, ["Pod"]),
    (call("delete", {"filename": ("ns.yaml",)}), NO_STDIN, set(), ["Namespace"]),
    (call("apply", {"filename": ("dir",)}), NO_STDIN, set(), ["Namespace", "RoleBinding"]),
    (
        call("apply", {"filename": ("ns.yaml", "pod.yaml")}),
        NO_STDIN,
        {"privileged"},
        ["Namespace", "Pod"],
    ),
    (call("apply", {"filename": ("missing.yaml",)}), NO_STDIN, {"unseen-manifest"}, []),
    (call("apply", {"filename": ("-",)}), HEREDOC, {"privileged"}, ["Pod"]),
    (
        call("apply", {"filename": ("-",)}),
        SimpleCommand(argv=("kubectl",), stdin_from="herestring", stdin="kind: Namespace\n"),
        set(),
        ["Namespace"],
    ),
    (
        call("apply", {"filename": ("-",)}),
        SimpleCommand(argv=("kubectl",), stdin_from="pipe"),
        {"unseen-manifest"},
        [],
    ),
    (call("apply", {"filename": ("-",)}), NO_STDIN, {"unseen-manifest"}, []),
    (
        call("apply", {"filename": ("-",)}),
        SimpleCommand(argv=("kubectl",), stdin_from="file", stdin="pod.yaml"),
        {"privileged"},
        ["Pod"],
    ),
    (
        call("apply", {"filename": ("https://example.com/x.yaml",)}),
        NO_STDIN,
        {"unseen-manifest"},
        [],
    ),
    (call("apply", {"kustomize": ("overlays/prod",)}), NO_STDIN, {"unseen-manifest"}, []),
    (
        call("create", {"filename": ("ns.yaml",), "edit": ("true",)}),
        NO_STDIN,
        {"unseen-manifest"},
        ["Namespace"],
    ),
    (
        call("run", {"image": ("busybox",), "overrides": ('{"spec": {"hostNetwork": true}}',)}),
        NO_STDIN,
        {"hostNetwork"},
        ["Pod"],
    ),
    (call("run", {"image": ("busybox",), "privileged": ("true",)}), NO_STDIN, {"privileged"}, []),
    (call("run", {"image": ("busybox",), "privileged": ("false",)}), NO_STDIN, set(), []),
    (
        call(
            "patch",
            {"patch": ('{"spec":{"template":{"spec":{"hostPID":true}}}}',)},
            resources=(DEPLOY,),
        ),
        NO_STDIN,
        {"hostPID"},
        [],
    ),
    (
        call("patch", {"patch": (JSON_PRIV,), "type": ("json",)}, resources=(DEPLOY,)),
        NO_STDIN,
        {"privileged"},
        [],
    ),
    (call("patch", {"patch-file": ("patch.yaml",), "type": ("merge",)}), NO_STDIN, {"hostIPC"}, []),
    (call("patch", {"patch-file": ("nope.yaml",)}), NO_STDIN, {"unseen-manifest"}, []),
    (call("patch", {"patch-file": ("dir",)}), NO_STDIN, {"unseen-manifest"}, []),
    (
        call(
            "patch",
            {"patch": ('{"subjects": [{"kind": "User", "name": "me"}]}',)},
            resources=(CRB,),
        ),
        NO_STDIN,
        {"cluster-admin-binding"},
        [],
    ),
    (call("debug", {"image": ("busybox",)}, resources=(NODE,)), NO_STDIN, {"node-access"}, []),
    (
        call("debug", {"image": ("busybox",)}, args=("node/worker-2",)),
        NO_STDIN,
        {"node-access"},
        [],
    ),
    (call("debug", {"profile": ("sysadmin",)}, args=("mypod",)), NO_STDIN, {"privileged"}, []),
    (call("debug", {"profile": ("netadmin",)}, args=("mypod",)), NO_STDIN, {"capabilities"}, []),
    (call("debug", {"profile": ("baseline",)}, args=("mypod",)), NO_STDIN, set(), []),
    (call("debug", {"custom": ("custom.json",)}, args=("mypod",)), NO_STDIN, {"capabilities"}, []),
    (call("debug", {"custom": ("gone.json",)}, args=("mypod",)), NO_STDIN, {"unseen-manifest"}, []),
    (
        call("create clusterrolebinding", {"clusterrole": ("cluster-admin",), "user": ("me",)}),
        NO_STDIN,
        {"cluster-admin-binding"},
        [],
    ),
    (call("create rolebinding", {"clusterrole": ("view",), "user": ("me",)}), NO_STDIN, set(), []),
    (
        call("create clusterrole", {"verb": ("*",), "resource": ("pods",)}),
        NO_STDIN,
        {"rbac-wildcard"},
        [],
    ),
    (
        call("create role", {"verb": ("get",), "resource": ("*",)}),
        NO_STDIN,
        {"rbac-wildcard", "rbac-secrets"},
        [],
    ),
    (
        call("create role", {"verb": ("get,list",), "resource": ("secret",)}),
        NO_STDIN,
        {"rbac-secrets"},
        [],
    ),
    (
        call("create role", {"verb": ("get", "list"), "resource": ("pods", "deployments.apps")}),
        NO_STDIN,
        set(),
        [],
    ),
    (
        call(
            "create clusterrole",
            {"verb": ("escalate", "bind"), "resource": ("clusterroles.rbac.authorization.k8s.io",)},
        ),
        NO_STDIN,
        {"rbac-escalate", "rbac-bind"},
        [],
    ),
    (
        call("create clusterrole", {"verb": ("impersonate",), "resource": ("users",)}),
        NO_STDIN,
        {"rbac-impersonate"},
        [],
    ),
    (
        call("create clusterrole", {"verb": ("create",), "resource": ("serviceaccounts/token",)}),
        NO_STDIN,
        {"rbac-token-create"},
        [],
    ),
    (
        call("create clusterrole", {"verb": ("get",), "non-resource-url": ("/metrics",)}),
        NO_STDIN,
        set(),
        [],
    ),
    (
        call("create clusterrole", {"aggregation-rule": ("rbac.example.com/agg=true",)}),
        NO_STDIN,
        {"rbac-wildcard"},
        [],
    ),
    (
        call("set subject", {"user": ("me",)}, resources=(CRB,)),
        NO_STDIN,
        {"cluster-admin-binding"},
        [],
    ),
    (call("set env", {"from": ("secret/db",)}), NO_STDIN, set(), []),
    (call("set serviceaccount"), NO_STDIN, set(), []),
    (call("get"), NO_STDIN, set(), []),
]


@pytest.mark.parametrize(("kcall", "cmd", "risks", "objects"), CALLS)
def test_inspect_call(
    kcall: KubectlCall, cmd: SimpleCommand, risks: set[str], objects: list[str]
) -> None:
    report = inspect_call(kcall, cmd, READER)
    assert names(report) == risks
    assert kinds(report) == objects
    assert bool(report.unseen) == ("unseen-manifest" in risks)


@pytest.mark.parametrize(
    ("flags", "recursive"),
    [({}, False), ({"recursive": ("true",)}, True), ({"recursive": ("false",)}, False)],
)
def test_inspect_call_passes_recursive(flags: dict[str, tuple[str, ...]], recursive: bool) -> None:
    reader = FakeReader({})
    inspect_call(call("apply", {"filename": ("dir",), **flags}), NO_STDIN, reader)
    assert reader.calls == [("dir", recursive)]


@pytest.mark.parametrize(
    ("kcall", "unseen"),
    [
        (call("apply", {"filename": ("-",)}), "-f - from inherit: the manifest is not in the line"),
        (
            call("apply", {"kustomize": ("k",)}),
            "-k k: kustomize output is only known when rendered",
        ),
        (call("apply", {"filename": ("x.yaml",)}), "-f x.yaml: cannot be read"),
    ],
)
def test_unseen_messages(kcall: KubectlCall, unseen: str) -> None:
    assert inspect_call(kcall, NO_STDIN, FakeReader({})).unseen == (unseen,)


# --------------------------------------------------------------------------- data tables


def test_every_risk_in_the_data_file_is_in_the_vocabulary() -> None:
    tables = json.loads(resources.files("guardctl.data").joinpath("manifests.json").read_text())
    used = {
        *tables["true_is_risk"].values(),
        *tables["unconfined_profiles"].values(),
        *tables["unconfined_annotations"].values(),
        *(g["risk"] for g in tables["rbac_grants"]),
        *(p["risk"] for p in tables["debug_profiles"].values()),
    }
    assert used <= RISKS


# --------------------------------------------------------------------------- files.read_manifests


def write(root: Path, rel: str, text: str = "kind: Namespace\n") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    write(tmp_path, "b.yaml")
    write(tmp_path, "a.json", '{"kind": "Namespace"}')
    write(tmp_path, "c.yml")
    write(tmp_path, "notes.txt")
    write(tmp_path, "sub/d.yaml")
    return tmp_path


@pytest.mark.parametrize(
    ("recursive", "expected"),
    [(False, ["a.json", "b.yaml", "c.yml"]), (True, ["a.json", "b.yaml", "c.yml", "sub/d.yaml"])],
)
def test_read_folder(tree: Path, recursive: bool, expected: list[str]) -> None:
    found = files.read_manifests(str(tree), recursive)
    assert found is not None
    assert [Path(name).relative_to(tree).as_posix() for name, _ in found] == expected


def test_read_folder_through_inspect_call(tree: Path) -> None:
    flat = inspect_call(call("apply", {"filename": (str(tree),)}), NO_STDIN)
    deep = inspect_call(call("apply", {"filename": (str(tree),), "recursive": ("true",)}), NO_STDIN)
    assert kinds(flat) == ["Namespace"]  # equal objects collapse
    assert flat.unseen == deep.unseen == ()


def test_read_single_file_any_extension(tmp_path: Path) -> None:
    path = write(tmp_path, "manifest.txt", "\ufeffkind: Pod\n")
    assert files.read_manifests(str(path), False) == [(str(path), "kind: Pod\n")]


def test_read_expands_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    write(tmp_path, "m.yaml")
    assert files.read_manifests("~/m.yaml", False) == [
        (str(tmp_path / "m.yaml"), "kind: Namespace\n")
    ]


def test_unreadable_inputs_give_none(tmp_path: Path) -> None:
    locked = write(tmp_path, "locked.yaml")
    locked.chmod(0)
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"kind: \xff\n")
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    assert files.read_manifests(str(tmp_path / "missing.yaml"), False) is None
    assert files.read_manifests(str(bad), False) is None
    assert files.read_manifests(str(fifo), False) is None  # would block: not a regular file
    assert files.read_manifests("/dev/stdin", False) is None
    assert files.read_manifests("bad\0path", False) is None
    if os.geteuid() != 0:  # root reads anything
        assert files.read_manifests(str(locked), False) is None


def test_folder_with_an_unreadable_manifest_is_none(tmp_path: Path) -> None:
    write(tmp_path, "ok.yaml")
    (tmp_path / "bad.yaml").write_bytes(b"\xff\xfe")
    assert files.read_manifests(str(tmp_path), False) is None


def test_unreadable_file_through_inspect_call(tmp_path: Path) -> None:
    report = inspect_call(call("apply", {"filename": (str(tmp_path / "nope.yaml"),)}), NO_STDIN)
    assert names(report) == {"unseen-manifest"}


def test_folder_bounds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(4):
        write(tmp_path, f"m{i}.yaml")
    monkeypatch.setattr(files, "MAX_FILES", 3)
    assert files.read_manifests(str(tmp_path), False) is None
    monkeypatch.setattr(files, "MAX_FILES", 10)
    monkeypatch.setattr(files, "MAX_TOTAL_BYTES", 40)
    assert files.read_manifests(str(tmp_path), False) is None
    monkeypatch.setattr(files, "MAX_TOTAL_BYTES", 1000)
    found = files.read_manifests(str(tmp_path), False)
    assert found is not None and len(found) == 4


def test_symlink_loop_does_not_trap_recursion(tmp_path: Path) -> None:
    write(tmp_path, "a/m.yaml")
    (tmp_path / "a" / "loop").symlink_to(tmp_path, target_is_directory=True)
    found = files.read_manifests(str(tmp_path), True)
    assert found is not None and len(found) == 1


@pytest.mark.parametrize(
    ("body", "patch_type", "kind", "risks"),
    [
        # Pod Security labels in every spelling, and labels dropped wholesale
        ('[{"op": "remove", "path": "/metadata/labels/pod-security.kubernetes.io~1warn"}]',
         "json", "Namespace", {"pod-security-label"}),
        ('[{"op": "replace", "path": "/metadata/labels", "value": {"a": "b"}}]',
         "json", "Namespace", {"pod-security-label"}),
        ('{"metadata": {"labels": {"pod-security.kubernetes.io\\u002faudit": "x"}}}',
         "merge", "Namespace", {"pod-security-label"}),
        ('{"metadata": {"labels": null}}', "merge", "Namespace", {"pod-security-label"}),
        ('{"metadata": {"labels": {"team": "a"}}}', "merge", "Namespace", set()),
        ('{"metadata": {"labels": {"team": "a"}}}', "strategic", "Deployment", set()),
        # nodes: unschedulable and taints, in YAML 1.1 as kubectl reads it
        ("spec: {unschedulable: y}", "merge", "Node", {"node-scheduling"}),
        ('{"spec": {"taints": null}}', "merge", "Node", {"node-scheduling"}),
        ('{"spec": {"unschedulable": false}}', "merge", "Node", set()),
        # zero replicas, however the zero is written
        ("spec: {replicas: 0x0}", "merge", "Deployment", {"zero-replicas"}),
        ('[{"op": "add", "path": "/spec/replicas", "value": 0}]', "json", "Scale",
         {"zero-replicas"}),
        ("spec: {replicas: '0'}", "merge", "Deployment", set()),
    ],
)
def test_patches_that_change_scheduling_security_and_scale(
    body: str, patch_type: str, kind: str, risks: set[str]
) -> None:
    assert {r.name for r in manifests.inspect_patch(body, patch_type, kind).risks} == risks


def test_a_node_manifest_without_taints_and_a_token_secret() -> None:
    node = manifests.inspect_text("kind: Node\nmetadata: {name: n}\nspec: {taints: []}\n", "n")
    assert not node.risks
    secret = manifests.inspect_text(
        "kind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/service-account-token\n", "s"
    )
    assert {r.name for r in secret.risks} == {"service-account-token"}
