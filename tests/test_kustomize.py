"""`apply -k DIR`: decided on what kubectl's kustomize renders, closed in (no plugins, helm,
files outside the kustomization or network), and applied when the render is ordinary.

The kustomizations are the corpus's (tests/corpus/manifests/kustomize); the real kubectl
renders them and applies them to the devserver, in same-user mode and through a broker.
"""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from guardctl.running.kustomize import render_folder

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
KUSTOMIZATIONS = Path(__file__).resolve().parent / "corpus" / "manifests" / "kustomize"


def guardctl(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "guardctl", *args], env=env, capture_output=True, timeout=60,
        cwd=cwd,
    )


def test_the_render_is_kubectls_own() -> None:
    assert KUBECTL is not None
    rendered = render_folder(KUBECTL, str(KUSTOMIZATIONS / "privileged"))
    expected = subprocess.run(
        [KUBECTL, "kustomize", str(KUSTOMIZATIONS / "privileged")], capture_output=True, check=True
    ).stdout.decode()
    assert rendered == expected and "privileged: true" in rendered


@pytest.mark.parametrize("name", ["helm", "escape", "remote", "remote-git", "plugin"])
def test_what_needs_more_than_local_files_is_not_rendered(name: str) -> None:
    assert KUBECTL is not None
    assert render_folder(KUBECTL, str(KUSTOMIZATIONS / name)) is None


@pytest.fixture
def web_server() -> Iterator[tuple[str, list[str]]]:
    """An HTTP server on loopback's other address, counting what is asked of it."""
    asked: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
            asked.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fetched}\n")

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.2", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.2:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("host", ["127.0.0.2", "guardctl.test"])
def test_a_remote_resource_is_not_fetched_while_deciding(
    web_server: tuple[str, list[str]], tmp_path: Path, host: str
) -> None:
    from guardctl.running.kustomize import _no_network

    if host.startswith("127.") and not _no_network():
        pytest.skip("no network namespace here: Go does not proxy loopback addresses")
    url, asked = web_server
    folder = tmp_path / "k"
    folder.mkdir()
    port = url.rsplit(":", 1)[1]
    (folder / "kustomization.yaml").write_text(f"resources: [http://{host}:{port}/x.yaml]\n")
    assert KUBECTL is not None
    assert render_folder(KUBECTL, str(folder)) is None
    assert asked == []
    # the same kustomization, rendered by kubectl as it is, does fetch from loopback
    if host.startswith("127."):
        subprocess.run([KUBECTL, "kustomize", str(folder)], capture_output=True, timeout=30)
        assert asked == ["/x.yaml"]


def test_apply_k_renders_then_applies(agent_env: dict[str, str], tmp_path: Path) -> None:
    proc = guardctl(agent_env, "apply", "-k", str(KUSTOMIZATIONS / "plain"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert b"deployment.apps/web" in proc.stdout
    admin = [KUBECTL or "kubectl", "--kubeconfig", agent_env["ADMIN_KUBECONFIG"], "-n", "dev"]
    shown = subprocess.run([*admin, "get", "deploy", "web", "-o", "yaml"], capture_output=True)
    assert shown.returncode == 0 and b"nginx:1.27" in shown.stdout


def test_a_privileged_overlay_waits_for_a_human(agent_env: dict[str, str], tmp_path: Path) -> None:
    proc = guardctl(agent_env, "apply", "-k", str(KUSTOMIZATIONS / "privileged"), cwd=tmp_path)
    assert proc.returncode == 12, proc.stderr  # nobody answers within the test's timeout
    assert b"privileged-workload" in proc.stderr


@pytest.mark.parametrize("name", ["helm", "plugin", "escape"])
def test_an_unrenderable_kustomization_is_denied(
    agent_env: dict[str, str], tmp_path: Path, name: str
) -> None:
    proc = guardctl(agent_env, "apply", "-k", str(KUSTOMIZATIONS / name), cwd=tmp_path)
    assert proc.returncode == 11, proc.stderr
    assert b"unseen-manifest" in proc.stderr


def test_through_a_broker_the_agents_folder_is_rendered(broker: object) -> None:
    from broker_setup import AGENT, Broker

    assert isinstance(broker, Broker)
    uid = int(subprocess.run(["id", "-u", AGENT], capture_output=True, check=True).stdout)
    for name in ("app", "app-privileged"):
        target = broker.work / name
        shutil.copytree(KUSTOMIZATIONS / "plain", target)
        if name == "app-privileged":
            patch = (KUSTOMIZATIONS / "privileged" / "kustomization.yaml").read_text()
            base = (target / "kustomization.yaml").read_text()
            (target / "kustomization.yaml").write_text(base + patch.split("resources:")[1]
                                                       .split("\n", 1)[1])
        for path in (target, *target.rglob("*")):
            os.chown(path, uid, -1)
    proc = broker.agent("apply", "-k", "app")
    assert proc.returncode == 0, proc.stderr
    assert broker.admin_kubectl("get", "cm", "-n", "dev").stdout.count(b"web-config-") >= 1
    proc = broker.agent("check", "kubectl apply -k app-privileged")
    assert proc.returncode == 10 and b"privileged-workload" in proc.stdout
    proc = broker.agent("check", "kubectl apply -k app")
    assert proc.returncode == 0, proc.stdout


def test_kubectl_applies_what_was_decided(agent_env: dict[str, str], tmp_path: Path) -> None:
    # a kubectl that, once the decision is made and just before applying, makes the agent's
    # kustomization privileged: the change an agent could race in after the decision
    folder = tmp_path / "app"
    shutil.copytree(KUSTOMIZATIONS / "plain", folder)
    patch = (KUSTOMIZATIONS / "privileged" / "kustomization.yaml").read_text()
    racing = tmp_path / "kubectl"
    racing.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {tmp_path / "argv.log"}\n'
        f'if [ "$1" = apply ]; then /bin/cat >> {folder / "kustomization.yaml"} <<"EOF"\n'
        + patch.split("\n", 2)[2].replace("resources: [../plain]\n", "")
        + "EOF\nfi\n"
        f'exec {KUBECTL} "$@"\n'
    )
    racing.chmod(0o755)
    env = {**agent_env, "GUARDCTL_KUBECTL": str(racing)}
    proc = guardctl(env, "apply", "-k", str(folder), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "privileged" in (folder / "kustomization.yaml").read_text()  # the race happened
    applied = (tmp_path / "argv.log").read_text().splitlines()[-1]
    assert applied.startswith("apply -k ") and str(folder) not in applied
    admin = [KUBECTL or "kubectl", "--kubeconfig", agent_env["ADMIN_KUBECONFIG"], "-n", "dev"]
    shown = subprocess.run([*admin, "get", "deploy", "web", "-o", "yaml"], capture_output=True)
    assert shown.returncode == 0 and b"privileged: true" not in shown.stdout


@pytest.mark.parametrize(
    "words",
    [
        ("apply", "-k", "app"),
        ("apply", "--kustomize=app", "-n", "dev"),
        ("apply", "-kapp"),
        ("delete", "--kustomize", "app", "--wait=false"),
    ],
)
def test_rewrite_points_k_at_the_rendered_copy(words: tuple[str, ...], tmp_path: Path) -> None:
    from guardctl.firewall.normalize import normalize
    from guardctl.model import SimpleCommand
    from guardctl.running.kustomize import rewrite

    call = normalize(SimpleCommand(argv=("kubectl", *words)))
    out = rewrite(words, call, {"app": "kind: ConfigMap\n"}, tmp_path)
    changed = [(a, b) for a, b in zip(words, out, strict=True) if a != b]
    assert len(changed) == 1 and changed[0][1].endswith(str(tmp_path / "kustomization0"))
    assert (tmp_path / "kustomization0" / "rendered.yaml").read_text() == "kind: ConfigMap\n"


def test_a_kustomization_that_was_not_rendered_is_not_run(tmp_path: Path) -> None:
    from guardctl.errors import UnsafeError
    from guardctl.firewall.normalize import normalize
    from guardctl.model import SimpleCommand
    from guardctl.running.kustomize import rewrite

    words = ("apply", "-k", "app", "-k", "other")
    call = normalize(SimpleCommand(argv=("kubectl", *words)))
    with pytest.raises(UnsafeError, match="-k other"):
        rewrite(words, call, {"app": "kind: ConfigMap\n"}, tmp_path)


def test_a_render_piped_into_apply_is_decided_and_applied(
    agent_env: dict[str, str], tmp_path: Path
) -> None:
    folder = tmp_path / "piped"
    shutil.copytree(KUSTOMIZATIONS / "plain", folder)
    text = (folder / "kustomization.yaml").read_text().replace("web-config", "piped-config")
    (folder / "kustomization.yaml").write_text(text)
    line = f"kubectl kustomize {folder} | kubectl apply -f -"
    proc = guardctl(agent_env, "sh", "-c", line, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert b"configmap/piped-config-" in proc.stdout
    privileged = f"kubectl kustomize {KUSTOMIZATIONS / 'privileged'} | kubectl apply -f -"
    asked = guardctl(agent_env, "sh", "-c", privileged, cwd=tmp_path)
    assert asked.returncode == 12 and b"privileged-workload" in asked.stderr
