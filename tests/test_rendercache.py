"""Kustomize renders kept across processes (guardctl.running.rendercache): found by the
content of everything kustomize reads, never served from a file another account could
have written, bounded, and what kubectl applies is still what was decided.

A logging kubectl (a script that notes each call, then runs the real one) shows when a
render was made and when it was served from the cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from guardctl.running import rendercache
from guardctl.running.kustomize import cached_render
from guardctl.running.rendercache import RenderStore, input_key

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
KUSTOMIZATIONS = Path(__file__).resolve().parent / "corpus" / "manifests" / "kustomize"


@pytest.fixture
def logged(tmp_path: Path) -> tuple[str, Path]:
    """(a kubectl that logs its arguments, then runs the real one; its log)."""
    log = tmp_path / "kubectl.log"
    script = tmp_path / "bin" / "kubectl"
    script.parent.mkdir()
    script.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec {KUBECTL} "$@"\n')
    script.chmod(0o755)
    log.touch()
    return str(script), log


def renders(log: Path) -> int:
    return sum(line.startswith("kustomize ") for line in log.read_text().splitlines())


@pytest.fixture
def app(tmp_path: Path) -> Path:
    """The corpus's `privileged` overlay and the `plain` base it names (`../plain`)."""
    for name in ("plain", "privileged"):
        shutil.copytree(KUSTOMIZATIONS / name, tmp_path / "k" / name)
    return tmp_path / "k" / "privileged"


def edit_keeping_stamps(path: Path, old: str, new: str) -> None:
    """A same-size edit with the modification time put back."""
    assert len(old) == len(new)
    info = path.stat()
    path.write_text(path.read_text().replace(old, new))
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


def test_a_render_is_kept_and_served_by_content(
    logged: tuple[str, Path], app: Path, tmp_path: Path
) -> None:
    kubectl, log = logged
    cache = tmp_path / "cache"
    first = cached_render(kubectl, str(app), cache)
    assert first is not None and "privileged: true" in first and renders(log) == 1
    assert cached_render(kubectl, str(app), cache) == first and renders(log) == 1
    # a same-size edit with its mtime put back, in the base the overlay names
    edit_keeping_stamps(app.parent / "plain" / "kustomization.yaml", "1.27", "1.28")
    second = cached_render(kubectl, str(app), cache)
    assert second is not None and "nginx:1.28" in second and renders(log) == 2
    edit_keeping_stamps(app / "kustomization.yaml", "privileged: true", "privileged: fals")
    assert "privileged: fals" in (cached_render(kubectl, str(app), cache) or "")
    assert renders(log) == 3


def test_another_process_is_served_from_the_cache(
    logged: tuple[str, Path], app: Path, tmp_path: Path
) -> None:
    kubectl, log = logged
    script = (
        "import sys; from pathlib import Path; from guardctl.running.kustomize import "
        "cached_render; print(cached_render(sys.argv[1], sys.argv[2], Path(sys.argv[3])))"
    )
    runs = [
        subprocess.run([sys.executable, "-c", script, kubectl, str(app), str(tmp_path / "c")],
                       capture_output=True, text=True, timeout=60, check=True).stdout
        for _ in range(2)
    ]
    assert runs[0] == runs[1] and "privileged: true" in runs[0]
    assert renders(log) == 1


def test_the_key_covers_names_and_modes(app: Path) -> None:
    assert KUBECTL is not None
    key = input_key(str(app), KUBECTL)
    assert key is not None and input_key(str(app), KUBECTL) == key and not key.remote
    (app.parent / "plain" / "deployment.yaml").chmod(0o640)
    moded = input_key(str(app), KUBECTL)
    assert moded not in (None, key)
    (app / "extra.yaml").write_text("")
    assert input_key(str(app), KUBECTL) not in (None, key, moded)


@pytest.mark.parametrize(
    "case", ["link", "outside-confine", "no-kustomization", "unreadable-yaml"]
)
def test_what_the_key_cannot_cover_is_not_cached(app: Path, case: str) -> None:
    assert KUBECTL is not None
    confine = None
    if case == "link":
        (app / "link.yaml").symlink_to(app.parent / "plain" / "deployment.yaml")
    elif case == "outside-confine":
        confine = str(app)  # as a broker's copy: `../plain` lies outside it
    elif case == "no-kustomization":
        (app / "kustomization.yaml").unlink()
    else:
        (app / "kustomization.yaml").write_text("resources: [unclosed\n")
    assert input_key(str(app), KUBECTL, confine) is None


def test_a_remote_word_is_marked(app: Path) -> None:
    assert KUBECTL is not None
    inputs = input_key(str(app), KUBECTL)
    assert inputs is not None and not inputs.remote
    with (app / "kustomization.yaml").open("a") as handle:
        handle.write("commonAnnotations: {source: 'https://example.invalid/x'}\n")
    inputs = input_key(str(app), KUBECTL)
    assert inputs is not None and inputs.remote


def test_a_refusal_is_kept_but_not_a_crash(logged: tuple[str, Path], tmp_path: Path) -> None:
    from guardctl.running.kustomize import _no_network

    kubectl, log = logged
    plugin = tmp_path / "plugin"
    shutil.copytree(KUSTOMIZATIONS / "plugin", plugin)
    for _ in range(2):
        assert cached_render(kubectl, str(plugin), tmp_path / "cache") is None
    assert renders(log) == 1  # kubectl's own refusal (an exec plugin) is settled
    # a refusal of inputs naming a URL (the chart's repo) is kept only with no network
    helm = tmp_path / "helm"
    shutil.copytree(KUSTOMIZATIONS / "helm", helm)
    for _ in range(2):
        assert cached_render(kubectl, str(helm), tmp_path / "cache") is None
    assert renders(log) == (2 if _no_network() else 3)
    crashing = tmp_path / "crashing"
    crashing.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexit 2\n')
    crashing.chmod(0o755)
    renders_before = renders(log)
    plain = tmp_path / "plain"
    shutil.copytree(KUSTOMIZATIONS / "plain", plain)
    for _ in range(2):
        assert cached_render(str(crashing), str(plain), tmp_path / "cache") is None
    assert renders(log) == renders_before + 2  # a crash is tried again


POISON = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: harmless}\n"


def plant(cache: Path, key: str) -> Path:
    """A cache file for `key` saying the render is harmless, written as this account."""
    folder = cache / rendercache.FOLDER
    folder.mkdir(parents=True, mode=0o700, exist_ok=True)
    path = folder / f"{key}.json"
    path.write_text(json.dumps({"key": key, "text": POISON}))
    path.chmod(0o600)
    return path


@pytest.mark.parametrize(
    "how", ["other-owner", "group-writable", "linked-file", "hard-link", "open-folder",
            "linked-folder", "other-key-inside"]
)
def test_a_cache_file_another_account_could_write_decides_nothing(
    app: Path, tmp_path: Path, how: str
) -> None:
    assert KUBECTL is not None
    inputs = input_key(str(app), KUBECTL)
    assert inputs is not None
    cache = tmp_path / "cache"
    path = plant(cache, inputs.key)
    assert cached_render(KUBECTL, str(app), cache) == POISON  # the plant works as planted
    if how == "other-owner":
        if os.geteuid() != 0:
            pytest.skip("needs root to give a file to another account")
        os.chown(path, 65534, -1)
    elif how == "group-writable":
        path.chmod(0o620)
    elif how == "linked-file":
        elsewhere = tmp_path / "elsewhere.json"
        path.rename(elsewhere)
        path.symlink_to(elsewhere)
    elif how == "hard-link":
        os.link(path, tmp_path / "second-name.json")
    elif how == "open-folder":
        path.parent.chmod(0o777)
    elif how == "linked-folder":
        moved = tmp_path / "their-folder"
        path.parent.rename(moved)
        path.parent.symlink_to(moved)
    else:
        path.write_text(json.dumps({"key": "0" * 64, "text": POISON}))
    rendered = cached_render(KUBECTL, str(app), cache)
    assert rendered is not None and "privileged: true" in rendered


def test_the_cache_is_bounded_least_recently_used_first(tmp_path: Path) -> None:
    store = RenderStore(tmp_path)
    keys = [f"{n:064x}" for n in range(rendercache.KEEP + 5)]
    for number, key in enumerate(keys):
        store.put(key, f"render {number}")
        os.utime(store.folder / f"{key}.json", ns=(number * 10**9, number * 10**9))
        if number == rendercache.KEEP - 1:
            kept = store.get(keys[0])  # the oldest, used: kept longer
            assert kept is not None and kept.text == "render 0"
    names = {p.name for p in store.folder.iterdir()}
    assert len(names) == rendercache.KEEP
    assert f"{keys[0]}.json" in names and f"{keys[1]}.json" not in names
    assert oct(store.folder.stat().st_mode & 0o777) == "0o700"
    assert all((store.folder / n).stat().st_mode & 0o077 == 0 for n in names)


def test_kubectl_applies_the_kept_render_of_what_is_there_now(
    agent_env: dict[str, str], logged: tuple[str, Path], tmp_path: Path
) -> None:
    kubectl, log = logged
    folder = tmp_path / "app"
    shutil.copytree(KUSTOMIZATIONS / "plain", folder)
    with (folder / "kustomization.yaml").open("a") as handle:
        handle.write("namePrefix: kept-\n")
    env = {**agent_env, "GUARDCTL_KUBECTL": kubectl}
    admin = [KUBECTL or "kubectl", "--kubeconfig", agent_env["ADMIN_KUBECONFIG"], "-n", "dev"]
    run = [sys.executable, "-m", "guardctl", "apply", "-k", str(folder)]
    for tag in ("1.27", "1.28"):
        if tag == "1.28":
            edit_keeping_stamps(folder / "kustomization.yaml", "1.27", "1.28")
        for _ in range(2):
            proc = subprocess.run(run, env=env, capture_output=True, timeout=60, cwd=tmp_path)
            assert proc.returncode == 0, proc.stderr
            shown = subprocess.run([*admin, "get", "deploy", "kept-web", "-o",
                                    "yaml"], capture_output=True, timeout=30)
            assert f"nginx:{tag}".encode() in shown.stdout
    assert renders(log) == 2  # once per content; each apply was given the kept render
    applies = [line for line in log.read_text().splitlines() if line.startswith("apply -k ")]
    assert len(applies) == 4 and not any(str(folder) in line for line in applies)


def test_through_a_broker_renders_are_kept_in_the_brokers_cache(broker: object) -> None:
    from broker_setup import AGENT, Broker

    assert isinstance(broker, Broker)
    uid = int(subprocess.run(["id", "-u", AGENT], capture_output=True, check=True).stdout)
    target = broker.work / "kept-app"
    shutil.copytree(KUSTOMIZATIONS / "plain", target)
    for path in (target, *target.rglob("*")):
        os.chown(path, uid, -1)
    folder = Path(broker.environ["XDG_CACHE_HOME"]) / "guardctl" / rendercache.FOLDER
    before = set(folder.glob("*.json")) if folder.exists() else set()
    for _ in range(2):
        proc = broker.agent("check", "kubectl apply -k kept-app")
        assert proc.returncode == 0, proc.stdout + proc.stderr
    new = set(folder.glob("*.json")) - before
    assert len(new) == 1
    info = folder.stat()
    assert info.st_uid == os.geteuid() and info.st_mode & 0o077 == 0
    assert not (broker.work / ".cache" / "guardctl" / rendercache.FOLDER).exists()
