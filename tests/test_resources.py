from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from guardctl.firewall import resources
from guardctl.model import ResourceRef

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("word", "qualified"),
    [
        ("pods", "pods"),
        ("pod", "pods"),
        ("po", "pods"),
        ("Pod", "pods"),
        ("PODS", "pods"),
        ("deploy", "deployments.apps"),
        ("Deployment", "deployments.apps"),
        ("deployments.apps", "deployments.apps"),
        ("deploy.apps", "deployments.apps"),
        ("Deployment.apps", "deployments.apps"),
        ("deployment.v1.apps", "deployments.apps"),
        ("pods.v1.", "pods"),
        ("pods.", "pods"),
        ("ns", "namespaces"),
        ("Namespace", "namespaces"),
        ("limits", "limitranges"),
        ("crd", "customresourcedefinitions.apiextensions.k8s.io"),
        ("crds", "customresourcedefinitions.apiextensions.k8s.io"),
        ("csr.certificates.k8s.io", "certificatesigningrequests.certificates.k8s.io"),
        ("certificatesigningrequests.certificates.k8s.io",
         "certificatesigningrequests.certificates.k8s.io"),
        # a name in several groups: kubectl prefers the core group (the server's order)
        ("events", "events"),
        ("ev", "events"),
        ("event", "events"),
        ("events.events.k8s.io", "events.events.k8s.io"),
        ("ev.events.k8s.io", "events.events.k8s.io"),
        ("pods.metrics.k8s.io", "pods.metrics.k8s.io"),
        ("hpa", "horizontalpodautoscalers.autoscaling"),
        ("hpa.v1.autoscaling", "horizontalpodautoscalers.autoscaling"),
        ("hpa.v2.autoscaling", "horizontalpodautoscalers.autoscaling"),
        ("svc", "services"),
        ("sa", "serviceaccounts"),
        ("secret", "secrets"),
        ("clusterrolebinding", "clusterrolebindings.rbac.authorization.k8s.io"),
        ("gtw", "gateways.gateway.networking.k8s.io"),
        ("refgrant", "referencegrants.gateway.networking.k8s.io"),
    ],
)
def test_lookup_resolves_like_kubectl(word: str, qualified: str) -> None:
    info = resources.lookup(word)
    assert info is not None
    assert info.qualified == qualified


@pytest.mark.parametrize(
    "word",
    ["", "foo", "pods/x", "pods,svc", "deployments.foo", "deployment.v9.apps", "all",
     "pods.v1.apps", "widgets.example.com", "po.extensions"],
)
def test_lookup_unknown(word: str) -> None:
    assert resources.lookup(word) is None


def test_preferred_version_is_first_served() -> None:
    hpa = resources.lookup("hpa")
    assert hpa is not None
    assert (hpa.version, hpa.versions, hpa.api_version) == ("v2", ("v2", "v1"), "autoscaling/v2")
    refgrant = resources.lookup("referencegrants")
    assert refgrant is not None and refgrant.version == "v1beta1"


def test_info_fields_and_ref() -> None:
    info = resources.lookup("serviceaccount")
    assert info is not None
    assert info.short_names == ("sa",)
    assert "token" in info.subresources
    assert info.namespaced
    assert info.ref("x", "token") == ResourceRef(
        "serviceaccounts", "", "ServiceAccount", True, "x", "token"
    )
    ns = resources.lookup("ns")
    assert ns is not None and not ns.namespaced and ns.api_version == "v1"


@pytest.mark.parametrize(
    ("kind", "api_version", "qualified"),
    [
        ("Deployment", "apps/v1", "deployments.apps"),
        ("Deployment", "", "deployments.apps"),
        ("Event", "", "events"),
        ("Event", "events.k8s.io/v1", "events.events.k8s.io"),
        ("Pod", "v1", "pods"),
        ("PodMetrics", "metrics.k8s.io/v1beta1", "pods.metrics.k8s.io"),
        ("HorizontalPodAutoscaler", "autoscaling/v1", "horizontalpodautoscalers.autoscaling"),
        ("ClusterRoleBinding", "rbac.authorization.k8s.io/v1",
         "clusterrolebindings.rbac.authorization.k8s.io"),
        ("Deployment", "apps/v1beta1", None),  # not served
        ("Deployment", "v1", None),  # wrong group
        ("deployment", "apps/v1", None),  # the API server's kinds are case-sensitive
        ("Widget", "example.com/v1", None),
    ],
)
def test_by_kind(kind: str, api_version: str, qualified: str | None) -> None:
    info = resources.by_kind(kind, api_version)
    assert (info.qualified if info else None) == qualified


def test_all_category_is_kubectls_get_all() -> None:
    members = resources.category("all")
    assert members is not None
    assert {m.qualified for m in members} == {
        "pods", "services", "replicationcontrollers", "daemonsets.apps", "deployments.apps",
        "replicasets.apps", "statefulsets.apps", "jobs.batch", "cronjobs.batch",
        "horizontalpodautoscalers.autoscaling",
    }
    assert resources.category("ALL") == members
    assert resources.category("pods") is None


def test_by_plural() -> None:
    assert resources.by_plural("secrets", "") == resources.lookup("secret")
    assert resources.by_plural("deployments", "apps", "v1") == resources.lookup("deploy")
    assert resources.by_plural("deployments", "apps", "v1beta2") is None
    assert resources.by_plural("deployments", "") is None


def test_every_resource_once_per_group() -> None:
    keys = [(i.group, i.resource) for i in resources.all_resources()]
    assert len(keys) == len(set(keys))
    assert all("/" not in i.resource for i in resources.all_resources())


def _load_script(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


def test_table_is_generated_from_the_shipped_discovery(monkeypatch: pytest.MonkeyPatch) -> None:
    gen = _load_script("gen_resources", monkeypatch)
    compact = _load_script("compact_json", monkeypatch)
    data = ROOT / "guardctl" / "data"
    documents = json.loads((data / "kubernetes-discovery.json").read_text("utf-8"))
    expected = compact.dump(gen.build(documents))
    assert (data / "resources.json").read_text("utf-8") == expected
