"""The devserver against the real kubectl (skipped when /usr/bin/kubectl is missing), plus
table-driven unit tests of its pure parts (patching, selectors, ages, protobuf)."""

from __future__ import annotations

import base64
import json
import os
import re
import select
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from guardctl.devserver import DevServer, protobuf
from guardctl.devserver.errors import ApiError
from guardctl.devserver.patch import json_patch, merge_patch, strategic_merge
from guardctl.devserver.selectors import field_selector, label_selector
from guardctl.devserver.tables import human_duration

KUBECTL = "/usr/bin/kubectl"
VERSIONED = [f"/usr/lib/google-cloud-sdk/bin/kubectl.1.{minor}" for minor in (27, 33)]
AGENT = "system:serviceaccount:guardctl:guardctl-agent"
needs_kubectl = pytest.mark.skipif(not os.path.exists(KUBECTL), reason="kubectl not installed")

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, labels: {app: api}}
spec:
  replicas: REPLICAS
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers: [{name: api, image: "busybox:1.36", env: [{name: MODE, value: fast}]}]
"""


@pytest.fixture(scope="module")
def server() -> Iterator[DevServer]:
    with DevServer() as dev:
        yield dev


@pytest.fixture(scope="module")
def kube_env(server: DevServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("kubehome")
    config = server.write_kubeconfig(home / "config")
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
            "KUBECONFIG": str(config), "KUBECACHEDIR": str(home / "cache")}


Run = Any  # the `kubectl` fixture's callable


@pytest.fixture(scope="module")
def kubectl(kube_env: dict[str, str]) -> Run:
    if not os.path.exists(KUBECTL):
        pytest.skip("kubectl not installed")

    def run(*args: str, stdin: str | None = None, binary: str = KUBECTL,
            ok: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([binary, *args], input=stdin, env=kube_env, text=True,
                                capture_output=True, timeout=60, check=False)
        if ok:
            assert result.returncode == 0, result.stderr
        return result

    return run


# ---------------------------------------------------------------------- reading


@needs_kubectl
def test_api_resources(kubectl: Run) -> None:
    out = kubectl("api-resources").stdout
    assert re.search(r"^deployments\s+deploy\s+apps/v1\s+true\s+Deployment$", out, re.M)
    assert re.search(r"^namespaces\s+ns\s+v1\s+false\s+Namespace$", out, re.M)


@needs_kubectl
@pytest.mark.parametrize(("args", "expected"), [
    ([], [r"^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE$",
          r"^web-7d4b9c8f6d-x2k9p\s+1/1\s+Running\s+0\s+26h$",
          r"^web-7d4b9c8f6d-q8m4z\s+1/1\s+Running\s+1\s+26h$"]),
    (["-o", "wide"], [r"^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE\s+IP\s+NODE\s",
                      r"^web-7d4b9c8f6d-x2k9p\s.*\s10\.244\.1\.12\s+node-1\s"]),
    (["-o", "name"], [r"\Apod/web-7d4b9c8f6d-q8m4z\npod/web-7d4b9c8f6d-x2k9p\n\Z"]),
    (["-o", "jsonpath={.items[*].status.podIP}"], [r"\A10\.244\.1\.13 10\.244\.1\.12\Z"]),
    (["-l", "app=web,pod-template-hash in (7d4b9c8f6d)", "-o", "name"], [r"x2k9p"]),
    (["--field-selector", "metadata.name=web-7d4b9c8f6d-x2k9p", "-o", "name"],
     [r"\Apod/web-7d4b9c8f6d-x2k9p\n\Z"]),
])
def test_get_pods_printed(kubectl: Run, args: list[str], expected: list[str]) -> None:
    out = kubectl("get", "pods", "-n", "dev", *args).stdout
    for pattern in expected:
        assert re.search(pattern, out, re.M), out


@needs_kubectl
@pytest.mark.parametrize("output", ["json", "yaml"])
def test_get_pods_structured(kubectl: Run, output: str) -> None:
    doc = yaml.safe_load(kubectl("get", "pods", "-n", "dev", "-o", output).stdout)
    assert doc["kind"] == "List"
    assert [p["metadata"]["name"] for p in doc["items"]] == [
        "web-7d4b9c8f6d-q8m4z", "web-7d4b9c8f6d-x2k9p"]
    assert {p["status"]["phase"] for p in doc["items"]} == {"Running"}


@needs_kubectl
def test_get_namespaces(kubectl: Run) -> None:
    out = kubectl("get", "ns").stdout
    for name in ("default", "kube-system", "kube-public", "dev", "prod", "guardctl"):
        assert re.search(rf"^{name}\s+Active\s+26h$", out, re.M), out


@needs_kubectl
def test_secrets_of_every_type(kubectl: Run) -> None:
    listed = yaml.safe_load(kubectl("get", "secrets", "-A", "-o", "yaml").stdout)["items"]
    types = {s["type"] for s in listed}
    assert types >= {"Opaque", "kubernetes.io/service-account-token", "kubernetes.io/dockercfg",
                     "kubernetes.io/dockerconfigjson", "kubernetes.io/basic-auth",
                     "kubernetes.io/ssh-auth", "kubernetes.io/tls",
                     "bootstrap.kubernetes.io/token"}
    app = next(s for s in listed if s["metadata"] == {**s["metadata"], "name": "app-secrets",
                                                      "namespace": "dev"})
    url = base64.b64decode(app["data"]["DATABASE_URL"]).decode()
    assert url == "postgres://app:s3cr3t-p4ss@db.dev.svc:5432/app"
    assert base64.b64decode(app["data"]["AWS_ACCESS_KEY_ID"]).startswith(b"AKIA")


@needs_kubectl
@pytest.mark.parametrize(("args", "expected"), [
    (["web-7d4b9c8f6d-x2k9p"], "DATABASE_URL=postgres://app:s3cr3t-p4ss@db:5432/app"),
    (["web-7d4b9c8f6d-x2k9p", "-c", "web", "--tail", "1"],
     '"GET / HTTP/1.1" 200 615 "-" "curl/8.5.0"\n'),
    (["web-7d4b9c8f6d-q8m4z", "--tail", "2"], "start worker processes\n10.244.0.1 -"),
])
def test_logs(kubectl: Run, args: list[str], expected: str) -> None:
    out = kubectl("logs", "-n", "dev", *args).stdout
    assert expected in out
    if "--tail" in args:
        assert out.count("\n") == int(args[args.index("--tail") + 1])


@needs_kubectl
def test_logs_follow_streams_until_the_server_stops(kube_env: dict[str, str],
                                                     tmp_path: Path) -> None:
    """`logs -f` gets the lines there are, then its stream stays open (no container here
    prints again) until the server stops, which ends kubectl cleanly."""
    with DevServer() as dev:
        config = dev.write_kubeconfig(tmp_path / "config")
        argv = [KUBECTL, "logs", "-f", "web-7d4b9c8f6d-x2k9p", "-n", "dev"]
        whole = subprocess.run(argv[:2] + argv[3:], env={**kube_env, "KUBECONFIG": str(config)},
                               capture_output=True, timeout=60).stdout
        follower = subprocess.Popen(argv, env={**kube_env, "KUBECONFIG": str(config)},
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert follower.stdout is not None
            seen = b"".join(follower.stdout.readline() for _ in whole.splitlines())
            assert seen == whole
            # open: neither more output nor its end, while the server runs
            readable, _, _ = select.select([follower.stdout], [], [], 1.0)
            assert readable == [] and follower.poll() is None
            dev.stop()
            rest, err = follower.communicate(timeout=60)
        finally:
            if follower.poll() is None:
                follower.kill()
                follower.wait()
    assert (follower.returncode, rest) == (0, b""), err


@needs_kubectl
@pytest.mark.parametrize(("args", "message"), [
    (["get", "ns", "nope"], 'Error from server (NotFound): namespaces "nope" not found'),
    (["get", "deploy", "nope", "-n", "dev"],
     'Error from server (NotFound): deployments.apps "nope" not found'),
    (["create", "ns", "dev"], 'Error from server (AlreadyExists): namespaces "dev" already exists'),
    (["create", "cm", "x", "-n", "missing"], 'namespaces "missing" not found'),
    (["logs", "-n", "dev", "web-7d4b9c8f6d-x2k9p", "-c", "sidecar"],
     "container sidecar is not valid for pod web-7d4b9c8f6d-x2k9p"),
    (["exec", "-n", "dev", "web-7d4b9c8f6d-x2k9p", "--", "ls"],
     "exec is not supported by the guardctl devserver"),
])
def test_errors_read_like_a_real_server(kubectl: Run, args: list[str], message: str) -> None:
    result = kubectl(*args, ok=False)
    assert result.returncode != 0
    assert message in result.stderr


# ---------------------------------------------------------------------- writing


@needs_kubectl
def test_apply_twice_then_change(kubectl: Run) -> None:
    kubectl("create", "ns", "team")  # kubectl 1.32+ sends this one as protobuf
    manifest = DEPLOYMENT.replace("REPLICAS", "1")
    outputs = [kubectl("apply", "-n", "team", "-f", "-", stdin=manifest).stdout for _ in range(2)]
    changed = kubectl("apply", "-n", "team", "-f", "-",
                      stdin=DEPLOYMENT.replace("REPLICAS", "3")).stdout
    assert outputs == ["deployment.apps/api created\n", "deployment.apps/api unchanged\n"]
    assert changed == "deployment.apps/api configured\n"
    got = kubectl("get", "deploy", "api", "-n", "team", "-o",
                  "jsonpath={.spec.replicas} {.metadata.generation}").stdout
    assert got == "3 2"
    assert re.search(r"^api\s+0/3\s+0\s+0\s+\d+s$", kubectl("get", "deploy", "-n", "team").stdout,
                     re.M)


@needs_kubectl
@pytest.mark.parametrize(("patch_type", "patch", "path", "expected"), [
    # merged by container name: the image changes, the ports the patch omits stay
    ("strategic",
     '{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:1.28"}]}}}}',
     "{.spec.template.spec.containers[0].image} "
     "{.spec.template.spec.containers[0].ports[0].containerPort}",
     "nginx:1.28 80"),
    ("json", '[{"op":"replace","path":"/spec/replicas","value":4}]', "{.spec.replicas}", "4"),
    ("merge", '{"metadata":{"labels":{"tier":"front"}}}', "{.metadata.labels.tier}", "front"),
])
def test_patch(kubectl: Run, patch_type: str, patch: str, path: str, expected: str) -> None:
    kubectl("patch", "deploy", "web", "-n", "prod", "--type", patch_type, "-p", patch)
    got = kubectl("get", "deploy", "web", "-n", "prod", "-o", f"jsonpath={path}").stdout
    assert got == expected


@needs_kubectl
def test_replace_and_stale_resource_version(kubectl: Run) -> None:
    current = yaml.safe_load(kubectl("get", "cm", "app-config", "-n", "prod", "-o", "yaml").stdout)
    current["data"]["LOG_LEVEL"] = "debug"
    assert kubectl("replace", "-f", "-", stdin=yaml.safe_dump(current)).stdout == \
        "configmap/app-config replaced\n"
    stale = kubectl("replace", "-f", "-", stdin=yaml.safe_dump(current), ok=False)
    assert "Error from server (Conflict)" in stale.stderr
    assert kubectl("get", "cm", "app-config", "-n", "prod", "-o",
                   "jsonpath={.data.LOG_LEVEL}").stdout == "debug"


@needs_kubectl
def test_delete_pod(kubectl: Run) -> None:
    out = kubectl("delete", "pod", "web-7d4b9c8f6d-q8m4z", "-n", "prod").stdout
    assert out == 'pod "web-7d4b9c8f6d-q8m4z" deleted\n'
    gone = kubectl("get", "pod", "web-7d4b9c8f6d-q8m4z", "-n", "prod", ok=False)
    assert 'pods "web-7d4b9c8f6d-q8m4z" not found' in gone.stderr


@needs_kubectl
def test_delete_namespace_removes_its_objects(kubectl: Run, server: DevServer) -> None:
    kubectl("create", "ns", "doomed")
    kubectl("create", "configmap", "settings", "-n", "doomed", "--from-literal=a=b")
    kubectl("create", "secret", "generic", "creds", "-n", "doomed", "--from-literal=pw=x")
    assert kubectl("delete", "ns", "doomed").stdout == 'namespace "doomed" deleted\n'
    assert "No resources found" in kubectl("get", "cm,secrets", "-n", "doomed").stderr
    cm_type = server.api.discovery.lookup("", "v1", "configmaps")
    assert cm_type is not None
    assert server.api.store.list(cm_type, "doomed", lambda _obj: True)[0] == []


@needs_kubectl
@pytest.mark.parametrize("kind_args", [
    ["sa", "robot"], ["role", "reader", "--verb=get", "--resource=pods"],
    ["deployment", "hello", "--image=nginx", "--replicas=2"],
])
def test_typed_create_commands(kubectl: Run, kind_args: list[str]) -> None:
    """kubectl 1.32+ sends these as protobuf; the object must arrive whole."""
    out = kubectl("create", *kind_args, "-n", "dev", "-o", "json").stdout
    created = json.loads(out)
    assert created["metadata"]["name"] == kind_args[1]
    assert created["metadata"]["uid"] and created["metadata"]["resourceVersion"]
    if kind_args[0] == "deployment":
        assert created["spec"]["replicas"] == 2
        assert created["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx"


# ---------------------------------------------------------------------- tokens and requests


@needs_kubectl
def test_create_token_authenticates(kubectl: Run, server: DevServer) -> None:
    token = kubectl("create", "token", "guardctl-agent", "-n", "guardctl",
                    "--duration", "10m").stdout.strip()
    assert token.startswith("eyJ")
    server.clear_requests()
    kubectl("get", "pods", "-n", "dev", "--token", token)
    assert ("GET", "/api/v1/namespaces/dev/pods", AGENT) in server.requests
    whoami = kubectl("auth", "whoami", "--token", token, "-o", "jsonpath={.status.userInfo}")
    assert AGENT in whoami.stdout
    assert kubectl("auth", "can-i", "delete", "pods", "--token", token).stdout == "yes\n"
    assert "*.*" in kubectl("auth", "can-i", "--list", "--token", token).stdout


@needs_kubectl
@pytest.mark.parametrize("make_token", [
    lambda server: server.issue_token(AGENT, -1),  # expired a second ago
    lambda server: "not-a-token-this-server-issued",
])
def test_bad_tokens_are_unauthorized(kubectl: Run, server: DevServer, make_token: Any) -> None:
    kubectl("get", "ns")  # discovery is cached: the only request is the GET below
    server.clear_requests()
    result = kubectl("get", "pods", "-n", "dev", "--token", make_token(server), ok=False)
    assert result.returncode == 1
    assert "error: You must be logged in to the server (Unauthorized)" in result.stderr
    assert server.requests == [("GET", "/api/v1/namespaces/dev/pods", "")]


def test_unauthorized_status_body(server: DevServer) -> None:
    request = urllib.request.Request(f"{server.url}/api/v1/namespaces")
    context = ssl.create_default_context(cadata=server.ca_pem.decode())
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, context=context, timeout=10)
    assert caught.value.code == 401
    assert json.loads(caught.value.read())["reason"] == "Unauthorized"


@needs_kubectl
def test_requests_are_recorded_and_cleared(kubectl: Run, server: DevServer) -> None:
    server.clear_requests()
    assert server.requests == []
    kubectl("get", "secret", "app-secrets", "-n", "dev")
    assert server.requests[-1] == ("GET", "/api/v1/namespaces/dev/secrets/app-secrets", "admin")


def test_kubeconfig_is_private(server: DevServer, tmp_path: Path) -> None:
    path = tmp_path / "kc"
    path.write_text("old")
    path.chmod(0o644)
    server.write_kubeconfig(path, token="t0k", namespace="dev")
    config = yaml.safe_load(path.read_text())
    assert path.stat().st_mode & 0o777 == 0o600
    assert config["current-context"] == "guardctl-dev"
    assert config["users"][0]["user"]["token"] == "t0k"
    assert config["contexts"][0]["context"]["namespace"] == "dev"
    assert config["clusters"][0]["cluster"]["server"] == server.url


@pytest.mark.parametrize("binary", [b for b in VERSIONED if os.path.exists(b)] or [
    pytest.param("missing", marks=pytest.mark.skip(reason="no versioned kubectl"))])
def test_other_kubectl_versions(kubectl: Run, binary: str) -> None:
    assert "deployments" in kubectl("api-resources", binary=binary).stdout
    out = kubectl("get", "pods", "-n", "dev", binary=binary).stdout
    assert re.search(r"^web-7d4b9c8f6d-x2k9p\s+1/1\s+Running", out, re.M)


# ---------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(("seconds", "shown"), [
    (-5, "<invalid>"), (0, "0s"), (119, "119s"), (150, "2m30s"), (600, "10m"), (3 * 3600, "3h"),
    (3 * 3600 + 60, "3h1m"), (26 * 3600, "26h"), (3 * 86400 + 3600, "3d1h"), (400 * 86400, "400d"),
    (3 * 365 * 86400 + 5 * 86400, "3y5d"),
])
def test_human_duration(seconds: int, shown: str) -> None:
    assert human_duration(seconds) == shown


@pytest.mark.parametrize(("selector", "labels", "matches"), [
    ("app=web", {"app": "web"}, True),
    ("app==web,tier!=db", {"app": "web", "tier": "db"}, False),
    ("app in (web, api)", {"app": "api"}, True),
    ("app notin (web)", {"app": "web"}, False),
    ("!canary", {"app": "web"}, True),
    ("canary", {"app": "web"}, False),
    ("", {}, True),
])
def test_label_selector(selector: str, labels: dict[str, str], matches: bool) -> None:
    assert label_selector(selector)({"metadata": {"labels": labels}}) is matches


@pytest.mark.parametrize("selector", ["app=(", "a in (b", "=x"])
def test_bad_selectors_are_rejected_not_ignored(selector: str) -> None:
    with pytest.raises(ApiError) as caught:
        label_selector(selector)
    assert caught.value.code == 400


def test_field_selector() -> None:
    pod = {"metadata": {"name": "a", "namespace": "dev"}, "status": {"phase": "Running"}}
    assert field_selector("metadata.name=a,status.phase!=Failed")(pod)
    assert not field_selector("metadata.namespace=prod")(pod)


PATCH_CASES = [
    (merge_patch, {"a": {"b": 1, "c": 2}}, {"a": {"b": None, "d": 3}}, {"a": {"c": 2, "d": 3}}),
    (merge_patch, {"l": [1, 2]}, {"l": [3]}, {"l": [3]}),
    (strategic_merge, {"c": [{"name": "x", "i": 1}, {"name": "y", "i": 2}]},
     {"c": [{"name": "y", "i": 9}], "$setElementOrder/c": [{"name": "x"}]},
     {"c": [{"name": "x", "i": 1}, {"name": "y", "i": 9}]}),
    (strategic_merge, {"c": [{"name": "x"}, {"name": "y"}]},
     {"c": [{"name": "x", "$patch": "delete"}]}, {"c": [{"name": "y"}]}),
    (strategic_merge, {"m": {"a": 1}}, {"m": {"$patch": "replace", "b": 2}}, {"m": {"b": 2}}),
    (json_patch, {"a": [1, 2]}, [{"op": "add", "path": "/a/-", "value": 3},
                                 {"op": "move", "from": "/a/0", "path": "/b"}],
     {"a": [2, 3], "b": 1}),
    (json_patch, {"a/b": {"~": 1}}, [{"op": "replace", "path": "/a~1b/~0", "value": 2}],
     {"a/b": {"~": 2}}),
]


@pytest.mark.parametrize(("apply", "target", "patch", "expected"), PATCH_CASES)
def test_patches(apply: Any, target: Any, patch: Any, expected: Any) -> None:
    assert apply(target, patch) == expected


@pytest.mark.parametrize("ops", [
    [{"op": "remove", "path": "/missing"}],
    [{"op": "test", "path": "/a", "value": 2}],
    [{"op": "frobnicate", "path": "/a"}],
    {"op": "add"},
])
def test_failing_json_patch_is_rejected(ops: Any) -> None:
    with pytest.raises(ApiError) as caught:
        json_patch({"a": 1}, ops)
    assert caught.value.code == 422


def _field(number: int, payload: bytes) -> bytes:
    return bytes([number << 3 | 2, len(payload)]) + payload


@pytest.mark.parametrize(("raw", "expected"), [
    (_field(1, _field(1, b"n1") + _field(11, _field(1, b"team") + _field(2, b"a"))),
     {"metadata": {"name": "n1", "labels": {"team": "a"}}}),
    (_field(1, _field(1, b"n1") + _field(2, b"")), {"metadata": {"name": "n1"}}),
])
def test_protobuf_namespace(raw: bytes, expected: dict[str, Any]) -> None:
    body = protobuf.MAGIC + _field(1, _field(1, b"v1") + _field(2, b"Namespace")) + _field(2, raw)
    assert protobuf.decode(body) == {"apiVersion": "v1", "kind": "Namespace", **expected}


@pytest.mark.parametrize("body", [
    b"not protobuf",
    protobuf.MAGIC + _field(1, _field(1, b"v1") + _field(2, b"Pod")),  # a kind not in the table
    protobuf.MAGIC + _field(1, _field(1, b"v1") + _field(2, b"Namespace"))
    + _field(2, _field(9, b"?")),  # a field not in the table
    protobuf.MAGIC + b"\x0a\xff",  # truncated
])
def test_protobuf_refuses_what_it_cannot_read(body: bytes) -> None:
    with pytest.raises(ApiError) as caught:
        protobuf.decode(body)
    assert caught.value.code == 415


def test_module_main_serves_until_sigterm(tmp_path: Path) -> None:
    config = tmp_path / "kc"
    proc = subprocess.Popen([sys.executable, "-m", "guardctl.devserver", "--kubeconfig-out",
                             str(config)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert re.match(r"guardctl devserver listening on https://127\.0\.0\.1:\d+; "
                        rf"kubeconfig: {re.escape(str(config))} ", line), line
        assert yaml.safe_load(config.read_text())["current-context"] == "guardctl-dev"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
