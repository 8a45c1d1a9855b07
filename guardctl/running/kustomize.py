"""Rendering `-k DIR` as `kubectl apply -k` would, so the policy decides on its objects, and
kubectl is then given exactly what was decided.

kubectl's own kustomize renders it, closed in: no plugins, exec functions or helm (each needs
a flag it is not given), files only from inside the kustomization's root (kustomize's default
load restrictor), and no network: in a network namespace of its own where Linux allows one
(`unshare --net --map-root-user`), and in any case with an empty `PATH` (remote bases are
cloned with git) and every proxy variable naming a closed port (remote resources are fetched
over HTTP; Go never proxies loopback addresses, which only the namespace closes). What cannot
be rendered so is unseen, and the policy says what that means.

The kubectl that runs the command gets a private kustomization holding only the rendered
objects (`rewrite`): what was decided is what is applied, and nothing is fetched or read
from the agent's folder a second time.
"""

from __future__ import annotations

import functools
import os
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from guardctl.env import Environment
from guardctl.errors import UnsafeError
from guardctl.model import KubectlCall, SimpleCommand
from guardctl.running.lifeline import die_with_this_process
from guardctl.running.rendercache import KUSTOMIZATION_FILES, RenderStore, input_key

# a kustomization is rendered within this many seconds, into at most this many bytes
RENDER_SECONDS = 20
MAX_RENDERED_BYTES = 10 * 1024 * 1024
# a port nothing listens on: every proxied request fails at once
_CLOSED = "http://127.0.0.1:9"
_PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy")
RENDERED_FILE = "rendered.yaml"


def render_folder(kubectl: str, folder: str) -> str | None:
    """The manifests `kubectl kustomize FOLDER` prints, or None when it fails (at once when
    the folder holds no kustomization: no kubectl is started for it)."""
    return _render(kubectl, folder).text


class _Outcome(NamedTuple):
    text: str | None  # None: no render
    # the same inputs give the same outcome: kubectl rendered them or refused them itself
    # (not a timeout, a signal, a crash or unshare's own failure)
    settled: bool


def _render(kubectl: str, folder: str) -> _Outcome:
    if not any(os.path.isfile(os.path.join(folder, name)) for name in KUSTOMIZATION_FILES):
        return _Outcome(None, False)
    with tempfile.TemporaryDirectory(prefix="guardctl-kustomize-") as home:
        environ = {
            "PATH": "",
            "HOME": home,
            "KUBECONFIG": os.devnull,
            **{name: _CLOSED for name in _PROXY_VARIABLES},
            "NO_PROXY": "",
            "no_proxy": "",
        }
        try:
            proc = subprocess.run(
                [*_no_network(), kubectl, "kustomize", folder],
                env=environ,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_this_process(),
                capture_output=True,
                timeout=RENDER_SECONDS,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return _Outcome(None, False)
    if proc.returncode != 0:
        # kubectl reports what it refuses with exit status 1; Go's own fatal errors exit 2
        return _Outcome(None, proc.returncode == 1 and not proc.stderr.startswith(b"unshare"))
    if len(proc.stdout) > MAX_RENDERED_BYTES:
        return _Outcome(None, True)
    try:
        return _Outcome(proc.stdout.decode("utf-8"), True)
    except UnicodeDecodeError:
        return _Outcome(None, True)


def cached_render(
    kubectl: str, folder: str, cache_dir: Path, confine: str | None = None
) -> str | None:
    """`render_folder`, or what rendering the same inputs gave before, kept in `cache_dir`
    (see `rendercache`; `confine`: the folder the inputs must lie in). An outcome is kept
    when it is settled and the inputs were the same before and after the render. A refusal
    kept only ever fails closed (the policy cannot see the manifests)."""
    inputs = input_key(folder, kubectl, confine)
    if inputs is None:
        return render_folder(kubectl, folder)
    store = RenderStore(cache_dir)
    kept = store.get(inputs.key)
    if kept is not None:
        return kept.text
    outcome = _render(kubectl, folder)
    # a remote input could be reached without a network namespace (loopback): not settled
    closed = not inputs.remote or (outcome.text is None and bool(_no_network()))
    if outcome.settled and closed and input_key(folder, kubectl, confine) == inputs:
        store.put(inputs.key, outcome.text)
    return outcome.text


# where unshare(1) is looked for: fixed places, never the caller's PATH
_UNSHARE = ("/usr/bin/unshare", "/bin/unshare")


@functools.cache
def _no_network() -> tuple[str, ...]:
    """The words that run a program without a network, where this machine allows it (tried
    once per process); none where it does not."""
    for unshare in _UNSHARE:
        words = (unshare, "--net", "--map-root-user", "--")
        try:
            tried = subprocess.run(
                [*words, "/bin/true"], stdin=subprocess.DEVNULL, capture_output=True, timeout=5
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if tried.returncode == 0:
            return words
    return ()


class Renders:
    """A policy Render (see firewall.manifests) that keeps what it rendered, by the path it
    was asked for, for `rewrite`; a path asked for again (a batch of lines) is not rendered
    again."""

    def __init__(self, render: Callable[[str], str | None]) -> None:
        self._render = render
        self.done: dict[str, str] = {}
        self._failed: set[str] = set()

    def __call__(self, path: str) -> str | None:
        if path in self.done or path in self._failed:
            return self.done.get(path)
        text = self._render(path)
        if text is None:
            self._failed.add(path)
        else:
            self.done[path] = text
        return text


def local_renders(env: Environment) -> Renders:
    """Render kustomizations from this process's disk (same-user mode)."""

    def render(folder: str) -> str | None:
        from guardctl.running.runner import find_kubectl

        try:
            kubectl = find_kubectl(env)
        except UnsafeError:
            return None
        return cached_render(kubectl, os.path.expanduser(folder), env.cache_dir)

    return Renders(render)


def rewrite(
    words: tuple[str, ...], call: KubectlCall, done: dict[str, str], folder: Path
) -> tuple[str, ...]:
    """kubectl's arguments with each `-k DIR` pointing at a private kustomization (in
    `folder`) of what DIR rendered to. UnsafeError when one was not rendered: kubectl
    would render it itself, unchecked."""
    from guardctl.firewall.manifests import kubectl_path

    cmd = SimpleCommand(argv=("kubectl", *words))
    values = list(call.flags.get("kustomize", ()))
    out = list(words)
    for number, (_, word) in enumerate(w for w in call.flag_words if w[0] == "kustomize"):
        value = values[number]
        text = done.get(kubectl_path(value, cmd))
        if text is None or not out[word].endswith(value):
            raise UnsafeError(f"-k {value}: the kustomization was not rendered for the decision")
        copy = folder / f"kustomization{number}"
        copy.mkdir(mode=0o700)
        (copy / RENDERED_FILE).write_text(text, encoding="utf-8")
        (copy / "kustomization.yaml").write_text(f"resources:\n- {RENDERED_FILE}\n")
        out[word] = out[word][: len(out[word]) - len(value)] + str(copy)
    return tuple(out)
