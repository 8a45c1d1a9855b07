"""`guardctl shim install DIR`: a `kubectl` in DIR that sends every call through guardctl.

Put DIR first on the agent's PATH and every `kubectl ...` the agent (or a script it runs)
starts is decided, masked and recorded. The shim is a two-line sh script naming guardctl,
so `runner.find_kubectl` recognises it and never runs it as the real kubectl.
"""

from __future__ import annotations

import os
import shlex
import tempfile
from collections.abc import Mapping
from pathlib import Path

from guardctl.env import Environment
from guardctl.errors import UsageError
from guardctl.running.runner import SHIM_SNIFF_BYTES, is_shim
from guardctl.runtime import launcher

SHIM_NAME = "kubectl"
MODE = 0o755
# the settings an agent's kubectl takes from whoever set up its entry point (this shim's
# installer, `sh -c`, the hook), never from the environment at run time: each names
# guardctl's rules, state, configuration, kubectl or keyring, or decides what Python loads
PINNED = (
    "GUARDCTL_HOME", "GUARDCTL_CONFIG", "GUARDCTL_RULES", "GUARDCTL_KUBECTL",
    "GUARDCTL_APPROVAL_TIMEOUT", "GUARDCTL_BROKER", "GUARDCTL_FORKSERVER", "HOME",
    "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR",
    "PYTHON_KEYRING_BACKEND", "PYTHONPATH", "PYTHONHOME", "PYTHONUSERBASE", "PYTHONNOUSERSITE",
    "PYTHONPLATLIBDIR", "PYTHONSAFEPATH",
)
# `env` from the system folders: the caller's PATH must not choose it
SYSTEM_ENV = ("/usr/bin/env", "/bin/env")
# the folders `install` wrote a shim to, one a line, in the state folder (for `uninstall`)
SHIMS_RECORD = "shims.txt"


def pinned(environ: Mapping[str, str]) -> list[str]:
    """`env` words that give a command exactly the PINNED settings of `environ`: the ones
    it has, and none of the others (whatever the command's caller set)."""
    program = next((p for p in SYSTEM_ENV if os.access(p, os.X_OK)), "env")
    unset = [word for name in PINNED if name not in environ for word in ("-u", name)]
    return [program, *unset, *(f"{n}={environ[n]}" for n in PINNED if n in environ)]


def script_text(words: list[str], pin: Mapping[str, str] | None = None) -> str:
    """The shim: exec guardctl's kubectl path with every argument unchanged; with `pin`,
    with those settings whatever the shim's caller set."""
    command = [*(pinned(pin) if pin is not None else []), *words]
    return (
        "#!/bin/sh\n"
        "# guardctl shim: this kubectl is decided, masked and recorded by guardctl\n"
        f'exec {shlex.join(command)} kubectl "$@"\n'
    )


def write_shim(folder: Path, words: list[str], pin: Mapping[str, str] | None = None) -> Path:
    """Write FOLDER/kubectl atomically (a symlink there is replaced, never followed)."""
    target = folder / SHIM_NAME
    fd, temp = tempfile.mkstemp(prefix=".kubectl-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(script_text(words, pin))
        os.chmod(temp, MODE)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return target


def install(env: Environment, folder: str | Path) -> Path:
    """Install the shim as FOLDER/kubectl and tell the user how to put FOLDER on PATH.

    Refuses (UsageError) to replace a `kubectl` that is not a guardctl shim: that may be
    the real kubectl, and overwriting it would leave guardctl nothing to run.
    """
    directory = Path(folder).expanduser().absolute()
    existing = directory / SHIM_NAME
    if existing.exists() and not _replaceable(existing):
        raise UsageError(
            f"{existing} exists and is not a guardctl shim; choose another folder "
            "(guardctl must never replace the real kubectl)"
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # the settings of the shell that installs it (a person's) are the agent's kubectl's
        path = write_shim(directory, launcher(), pin=env.environ)
    except OSError as exc:
        raise UsageError(f"cannot write {existing}: {exc.strerror or exc}") from None
    _remember(env, directory)
    env.stdout.write(advice(env, directory) + "\n")
    return path


def recorded_folders(env: Environment) -> list[Path]:
    """The folders `install` wrote a shim to (some may be gone since)."""
    try:
        text = (env.state_dir / SHIMS_RECORD).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    return [Path(line) for line in text.splitlines() if line.startswith("/")]


def _remember(env: Environment, folder: Path) -> None:
    """Record `folder` for `guardctl uninstall`; a record that cannot be written is said,
    not fatal (uninstall also finds shims on PATH)."""
    if folder in recorded_folders(env):
        return
    try:
        env.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with (env.state_dir / SHIMS_RECORD).open("a", encoding="utf-8") as handle:
            handle.write(f"{folder}\n")
    except OSError as exc:
        env.stderr.write(f"guardctl: could not record {folder} for `guardctl uninstall` "
                         f"({exc.strerror or exc})\n")


def _replaceable(path: Path) -> bool:
    """A readable guardctl shim (an unreadable file is never taken for one here)."""
    try:
        with path.open("rb") as handle:
            handle.read(SHIM_SNIFF_BYTES)
    except OSError:
        return False
    return is_shim(path)


def advice(env: Environment, directory: Path) -> str:
    """How to make the agent's `kubectl` this shim; says so when it already is."""
    entries = [p for p in env.environ.get("PATH", "").split(os.pathsep) if p]
    lines = [f"installed {directory / SHIM_NAME}"]
    if entries[:1] == [str(directory)]:
        lines.append(f"{directory} is already first on PATH: `kubectl` now goes through guardctl.")
    else:
        lines += [
            "Put it first on the agent's PATH, e.g. in the shell profile the agent starts with:",
            f"  export PATH={shlex.quote(str(directory))}:\"$PATH\"",
        ]
    lines.append("Check with `command -v kubectl`: it should print the shim.")
    return "\n".join(lines)
