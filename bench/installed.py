"""guardctl as a user's install runs it: a console script in a clean virtual environment.

The benchmarks time whole processes, so what Python does before guardctl's first line
counts. An interpreter's `site` runs every `.pth` file of its site-packages; a developer's
interpreter may carry hooks there (an editable-install finder, a certificate injector)
that a `pip install guardctl` or `pipx install guardctl` into its own venv does not have.

`installed_guardctl` builds, once per run, a venv without pip whose only `.pth` puts this
checkout and the current interpreter's site-packages on `sys.path` (directories listed in a
`.pth` are added, their own `.pth` files are not run), and the `guardctl` command as pip
installs it: bin/guardctl with its `#!python` line naming the venv's interpreter
(tests/test_install.py checks that against a real install of the wheel).
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import NamedTuple

from guardctl.devserver import DevServer

# how long a broker has to say it is ready
READY_SECONDS = 60.0
CHECKOUT = Path(__file__).resolve().parent.parent


def installed_guardctl(root: Path) -> tuple[list[str], list[str]]:
    """(argv of the `guardctl` script, argv of its bare interpreter) in a new venv under root."""
    venv = root / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True
    )
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    paths = [str(CHECKOUT), *_site_dirs()]
    (Path(purelib) / "guardctl-bench.pth").write_text("\n".join(paths) + "\n")
    script = venv / "bin" / "guardctl"
    body = (CHECKOUT / "bin" / "guardctl").read_text().partition("\n")[2]
    script.write_text(f"#!{python}\n{body}")
    script.chmod(0o755)
    return [str(script)], [str(python)]


def _site_dirs() -> list[str]:
    dirs = [*site.getsitepackages(), sysconfig.get_paths()["purelib"]]
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    return list(dict.fromkeys(d for d in dirs if os.path.isdir(d)))


def installed_like(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment without PYTHONDONTWRITEBYTECODE: an installed guardctl has its bytecode
    compiled at install time, so a run must not pay for compiling it."""
    return {k: v for k, v in environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def fork_server_path(python: list[str], env: Mapping[str, str]) -> str:
    """Where the installed guardctl's fork server listens for clients with `env` (the path
    names the interpreter, so the installed one must say)."""
    code = (
        "import os; from guardctl.broker.forkclient import socket_path;"
        " print(socket_path(os.environ))"
    )
    return subprocess.run(
        [*python, "-c", code], env=dict(env), check=True, capture_output=True, text=True
    ).stdout.strip()


def state_environ(root: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` (as `installed_like`) with every guardctl path in `root` and a plaintext
    file keyring: a benchmark's own world."""
    return {
        **installed_like(environ),
        "GUARDCTL_HOME": str(root / "home"),
        "GUARDCTL_CONFIG": str(root / "config.yaml"),
        "XDG_DATA_HOME": str(root / "data"),
        "XDG_CACHE_HOME": str(root / "cache"),
        "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
        "XDG_RUNTIME_DIR": str(root / "run"),  # this run's own fork server
    }


def import_credentials(guardctl: list[str], kubeconfig: Path, env: Mapping[str, str]) -> None:
    """`guardctl creds import` of the devserver's admin kubeconfig, for the demo's agent
    ServiceAccount, into the state `env` names."""
    subprocess.run(
        [*guardctl, "creds", "import", "--kubeconfig", str(kubeconfig),
         "--service-account", "guardctl/guardctl-agent"],
        env=env, check=True, capture_output=True,
    )


class World(NamedTuple):
    """A benchmark's throwaway world (see `bench_world`)."""

    root: Path
    server: DevServer
    kubectl: str
    admin: Path  # the devserver's admin kubeconfig, for raw kubectl
    env: dict[str, str]  # guardctl's environment: every path under root
    guardctl: list[str]  # the console script, as a user's install runs it
    python: list[str]  # its interpreter


@contextmanager
def bench_world(prefix: str) -> Iterator[World]:
    """The devserver on 127.0.0.1, guardctl installed in a clean venv and its admin credential
    imported, all under a new folder named `prefix…`; removed when the block ends."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise SystemExit("kubectl is not installed")
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        (root / "run").mkdir(mode=0o700)
        with DevServer() as server:
            admin = server.write_kubeconfig(root / "admin.kubeconfig")
            env = state_environ(root, os.environ)
            env.pop("GUARDCTL_BROKER", None)
            guardctl, python = installed_guardctl(root)
            import_credentials(guardctl, admin, env)
            yield World(root, server, kubectl, admin, env, guardctl, python)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def start_broker(
    guardctl: list[str], env: Mapping[str, str], log: Path, *args: str
) -> tuple[subprocess.Popen[bytes], str]:
    """`guardctl broker serve ARGS` in the background, its stderr (a line per request) to the
    file `log`, once it said it is ready; and that line (where it listens). End it with
    `stop_broker`."""
    with open(log, "wb") as log_file:
        broker = subprocess.Popen(
            [*guardctl, "broker", "serve", *args], env=dict(env),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log_file,
        )
    deadline = time.monotonic() + READY_SECONDS
    while "ready on" not in (said := log.read_text(errors="replace")):
        if broker.poll() is not None or time.monotonic() > deadline:
            stop_broker(broker)
            raise SystemExit(f"the broker did not start: {said.strip()}")
        time.sleep(0.05)
    return broker, said.strip().splitlines()[0]


def stop_broker(broker: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and SIGKILL if it has not ended 10 s later."""
    broker.terminate()
    with suppress(subprocess.TimeoutExpired):
        broker.wait(timeout=10)
    broker.kill()  # nothing, when it ended (Popen does not signal a process it reaped)
    broker.wait()


def forget_token(environ: dict[str, str]) -> None:
    """Drop the token the runs cached in the kernel keyring (it would stay until its timeout)."""
    from guardctl.config import load_config
    from guardctl.env import Environment
    from guardctl.running.creds import kernel_cache

    env = Environment(environ=environ)
    config = load_config(env.config_path)
    cache = kernel_cache(env, config) if config is not None else None
    if cache is not None:
        cache.drop()
