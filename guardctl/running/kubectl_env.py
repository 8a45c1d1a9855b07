"""kubectl's environment, built by guardctl from nothing: never inherited from the agent.

kubectl reads far more than its argv. From the environment: `KUBECONFIG`; `KUBERC` and
`KUBECTL_KUBERC` (aliases and default flags, kubectl 1.33+, which can turn `get` into
something else); `KUBE_EDITOR`/`EDITOR` (`edit`); `KUBECTL_EXTERNAL_DIFF` (`diff` runs it
with the token in its environment); `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` (where the token
is sent); `KUBECACHEDIR` and `HOME` (the discovery cache maps short names to resources);
`KUBECTL_*` feature switches; `PATH` (plugins, `diff`). Each is a way for whoever sets
the environment to change what kubectl does after guardctl decided.

So kubectl gets exactly this, in both modes:

* `KUBECONFIG`: guardctl's private kubeconfig holding the minted token;
* `HOME`: guardctl's own folder for kubectl (`$XDG_CACHE_HOME/guardctl/kubectl`, 0700),
  with kubectl's discovery and HTTP caches in it — the broker's, never the agent's;
* `PATH`: a folder in it holding only the programs kubectl itself starts (`diff`), linked
  from the system folders, never from the caller's PATH: no plugins, no stand-ins;
* `KUBERC=off` and `KUBECTL_KUBERC=false`: no user preferences file;
* `TMPDIR`: the run's private folder (`kubectl diff` writes its two trees there);
* `GOGC=200`: Go's collector runs half as often (kubectl is short-lived; `get pods`
  is about 7% faster, for a heap that may grow to three times its live size instead of
  two);
* nothing else: no editor, no external diff, no proxy, no feature switches.
"""

import os
from collections.abc import Mapping
from pathlib import Path

HOME_NAME = "kubectl"
BIN_NAME = "bin"
# where the programs kubectl starts are looked up: system folders only
SYSTEM_PATH = ("/usr/local/bin", "/usr/bin", "/bin")
TOOLS = ("diff",)
# Go's collector target for kubectl: a run lives a fraction of a second, most of it parsing
# the discovery cache, and at Go's default (100) that costs it several collections
GOGC = "200"
# what minting (`kubectl create token` with the stored credential) must not inherit either:
# the variables above that steer kubectl; the rest stays, for exec credential plugins
# (gcloud, aws) that read their own configuration from it
STEERING = ("KUBECONFIG", "KUBERC", "KUBECACHEDIR", "KUBE_EDITOR", "EDITOR", "VISUAL",
            "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "ALL_PROXY")


def kubectl_home(cache_dir: Path) -> Path:
    return cache_dir / HOME_NAME


def _system_program(name: str) -> str | None:
    for folder in SYSTEM_PATH:
        candidate = os.path.join(folder, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def prepare(cache_dir: Path) -> Path:
    """kubectl's home (0700) with its `bin` folder of tools, made or mended; returns it.

    Cheap when all is in place (two stats per tool): it runs before every kubectl.
    """
    home = kubectl_home(cache_dir)
    tools = home / BIN_NAME
    if not tools.is_dir():
        tools.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(home, 0o700)
    for name in TOOLS:
        link = tools / name
        target = _system_program(name)
        try:
            current = os.readlink(link)
        except OSError:
            current = None
        if current == target:
            continue
        if target is None:
            _remove(link)
        else:
            _link(target, link)
    return home


def _link(target: str, link: Path) -> None:
    """Point `link` at `target` in one step: made under a name of this process's own, then
    renamed over whatever is there, so runs preparing the folder at once all succeed. The
    name is in the folder above, so that one left by a killed run is never on kubectl's PATH."""
    spare = link.parent.parent / f".{link.name}.{os.getpid()}.{os.urandom(4).hex()}"
    os.symlink(target, spare)
    try:
        os.replace(spare, link)
    except OSError:
        _remove(spare)
        raise


def _remove(path: Path) -> None:
    """Remove `path` (the link itself, never its target); gone already is fine."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def environ(home: Path, kubeconfig: Path, temp_dir: Path) -> dict[str, str]:
    """The whole environment of one kubectl run (see the module docstring)."""
    return {
        "PATH": str(home / BIN_NAME),
        "HOME": str(home),
        "KUBECONFIG": str(kubeconfig),
        "KUBERC": "off",
        "KUBECTL_KUBERC": "false",
        "TMPDIR": str(temp_dir),
        "GOGC": GOGC,
    }


def mint_environ(environ: Mapping[str, str], kubeconfig: Path) -> dict[str, str]:
    """The environment of `kubectl create token` with the stored credential: the caller's,
    without what steers kubectl (`STEERING`, any `KUBECTL_*`, lower-case proxies), with the
    private kubeconfig and no preferences file."""
    kept = {
        name: value for name, value in environ.items()
        if name.upper() not in STEERING and not name.startswith("KUBECTL_")
    }
    return {**kept, "KUBECONFIG": str(kubeconfig), "KUBERC": "off", "KUBECTL_KUBERC": "false"}
