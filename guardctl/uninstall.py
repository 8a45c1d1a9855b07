"""`guardctl uninstall`: remove what guardctl wrote for this account, after saying what.

What goes: the `kubectl` shims `guardctl shim install` wrote (the folders it recorded, and
any folder on PATH whose `kubectl` is a guardctl shim); every managed context's credential
and cached tokens (OS keyring, the token file beside a file keyring, the kernel keyring);
the config file; the cache folder; the fork server and its runtime folder; and the state
folder (audit log, casts, approvals) unless `keep_state`. What stays, and is said: hook
settings that run `guardctl hook claude-code` (guardctl never writes those files: the person
edits them) and the installed program itself (pipx/pip uninstall it).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import NamedTuple

from guardctl.agents.shim import SHIMS_RECORD
from guardctl.env import Environment
from guardctl.errors import GuardError, UnsafeError

# hook settings files an agent tool reads, relative to the home and the working folder
HOOK_FILES = (".claude/settings.json", ".claude/settings.local.json")
HOOK_COMMAND = "guardctl hook"


class Item(NamedTuple):
    what: str  # a line of the plan
    remove: Callable[[], None]


class Plan(NamedTuple):
    items: tuple[Item, ...]
    kept: tuple[str, ...]  # lines on what stays, and why


def _shims(env: Environment) -> list[Path]:
    """Every guardctl shim recorded or on PATH (never a real kubectl)."""
    from guardctl.agents.shim import recorded_folders
    from guardctl.running.runner import is_shim

    on_path = [Path(p) for p in env.environ.get("PATH", "").split(os.pathsep) if p.startswith("/")]
    found = []
    for folder in dict.fromkeys([*recorded_folders(env), *on_path]):
        shim = folder / "kubectl"
        if shim.is_file() and not shim.is_symlink() and is_shim(shim):
            found.append(shim)
    return found


def _keyring_items(env: Environment) -> list[Item]:
    from guardctl.config import DEFAULT_KEYRING_SERVICE, load_contexts
    from guardctl.running import creds

    contexts = load_contexts(env.config_path)
    items = [
        Item(f"the credential and cached tokens of context {c.context!r} in the keyring "
             f"{creds.backend_name(creds.Vault(c.keyring_service))}",
             partial(creds.forget_secrets, env, c))
        for c in (contexts.all if contexts else ())
    ]
    vault = creds.Vault(contexts.default.keyring_service if contexts else
                        DEFAULT_KEYRING_SERVICE)
    token_file = vault.tokens().file
    if token_file is not None and vault.file is not None:
        own = [token_file, Path(f"{token_file}.lock"), Path(f"{vault.file}.lock")]
        present = [f for f in own if f.exists()]
        if present:
            items.append(Item("guardctl's files beside the keyring file: "
                              + ", ".join(str(f) for f in present),
                              partial(_unlink, present)))
    return items


def _unlink(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _folder_item(what: str, folder: Path) -> list[Item]:
    return [Item(f"{what}: {folder}", lambda: shutil.rmtree(folder))] if folder.exists() else []


def _runtime_items(env: Environment) -> list[Item]:
    from guardctl.runtime import socket_folder

    folder = Path(socket_folder(env.environ))
    if not folder.is_dir():
        return []

    def stop_and_remove() -> None:
        from guardctl.broker import forkcontrol

        for sock in folder.glob("fork-*.sock"):
            forkcontrol.stop(str(sock))
        shutil.rmtree(folder)

    return [Item(f"the fork server and its runtime folder: {folder}", stop_and_remove)]


def _config_items(env: Environment) -> list[Item]:
    path = env.config_path
    if not path.is_file():
        return []

    def remove() -> None:
        path.unlink()
        try:
            path.parent.rmdir()  # only when empty: the person may keep rules there
        except OSError:
            pass

    return [Item(f"the config file: {path}", remove)]


def _state_items(env: Environment, keep_state: bool) -> tuple[list[Item], list[str]]:
    state = env.state_dir
    if not state.exists():
        return [], []
    if keep_state:
        record = state / SHIMS_RECORD
        items = [Item(f"the record of shim folders: {record}", partial(_unlink, [record]))]
        return (items if record.exists() else []), [
            f"kept (--keep-state): {state} (audit log, casts, approvals)"]
    return _folder_item("the state folder (audit log, casts, approvals)", state), []


def _hook_notes(env: Environment) -> list[str]:
    notes = []
    for base in dict.fromkeys([env.home, Path.cwd()]):
        for name in HOOK_FILES:
            path = base / name
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            if HOOK_COMMAND in text:
                notes.append(f"left as is: {path} runs `{HOOK_COMMAND} claude-code`; remove "
                             "that hook from it yourself (guardctl did not write the file)")
    return notes


def plan(env: Environment, keep_state: bool) -> Plan:
    """What `uninstall` removes, in order (keyring entries need the config, so they go
    first), and what it leaves. A config that cannot be read or a keyring that cannot be
    opened is an UnsafeError: nothing is removed while credentials could be left behind."""
    shims = [Item(f"the kubectl shim {s}", s.unlink) for s in _shims(env)]
    try:
        keyring = _keyring_items(env)
    except GuardError as err:
        raise UnsafeError(f"{err}; nothing was removed") from err
    state, kept = _state_items(env, keep_state)
    items = [*keyring, *shims, *_config_items(env),
             *_folder_item("the cache folder", env.cache_dir), *_runtime_items(env), *state]
    program = ("left as is: the guardctl program itself: `pipx uninstall guardctl`, "
               "`uv tool uninstall guardctl` or `pip uninstall guardctl`")
    return Plan(tuple(items), (*kept, *_hook_notes(env), program))


def run(plan_: Plan) -> list[str]:
    """Remove every item; the lines for those that could not be removed."""
    failures = []
    for item in plan_.items:
        try:
            item.remove()
        except (GuardError, OSError) as err:
            failures.append(f"could not remove {item.what} ({err})")
    return failures
