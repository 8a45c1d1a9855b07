"""The Environment: every stream, variable and path guardctl's I/O layer touches.

Built once in `cli.main()` from the real process; tests build their own with fake
streams and a temporary home, instead of patching globals (httpie's context.py idea).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO, cast

from guardctl.errors import UsageError

if TYPE_CHECKING:
    from guardctl.broker.caller import Caller
    from guardctl.config import Contexts
    from guardctl.firewall.policy import PolicyContext


# the variables the paths of `Environment.policy_context` come from
_PLACES = ("GUARDCTL_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME", "GUARDCTL_CONFIG",
           "XDG_CACHE_HOME", "GUARDCTL_RULES", "XDG_RUNTIME_DIR")
# the policy context last made, with what it was made from: the home, those variables and
# the managed contexts (the same object while the config file is unchanged); a warm
# worker's request finds it made by the warm-up
_MADE: list[tuple[tuple[object, ...], Contexts | None, PolicyContext]] = []


class Environment:
    """The process's streams, variables and home; each defaults to the real one.

    `caller` is set in a broker's worker: the client the command came from (who, in which
    role, and the connection to it). None when guardctl runs for its own user.
    """

    __slots__ = ("stdin", "stdout", "stderr", "environ", "home", "caller")

    def __init__(
        self,
        stdin: IO[str] | None = None,
        stdout: IO[str] | None = None,
        stderr: IO[str] | None = None,
        environ: Mapping[str, str] | None = None,
        home: Path | None = None,
        caller: Caller | None = None,
    ) -> None:
        self.stdin: IO[str] = sys.stdin if stdin is None else stdin
        self.stdout: IO[str] = sys.stdout if stdout is None else stdout
        self.stderr: IO[str] = sys.stderr if stderr is None else stderr
        self.environ: Mapping[str, str] = dict(os.environ) if environ is None else environ
        self.home: Path = Path.home() if home is None else home
        self.caller = caller

    @staticmethod
    def binary(stream: IO[str]) -> BinaryIO:
        """The byte stream under a text stream: kubectl's output passes through as bytes."""
        return cast(BinaryIO, getattr(stream, "buffer", stream))

    def _xdg(self, variable: str, fallback: str) -> Path:
        value = self.environ.get(variable)
        return Path(value) if value else self.home / fallback

    @property
    def state_dir(self) -> Path:
        """`GUARDCTL_HOME`: casts, audit log, approval queue."""
        explicit = self.environ.get("GUARDCTL_HOME")
        if explicit:
            return Path(explicit).expanduser()
        return self._xdg("XDG_STATE_HOME", ".local/state") / "guardctl"

    @property
    def cache_dir(self) -> Path:
        """Derived data that only saves time (the parsed rules): safe to delete."""
        return self._xdg("XDG_CACHE_HOME", ".cache") / "guardctl"

    @property
    def config_path(self) -> Path:
        explicit = self.environ.get("GUARDCTL_CONFIG")
        if explicit:
            return Path(explicit).expanduser()
        return self._xdg("XDG_CONFIG_HOME", ".config") / "guardctl" / "config.yaml"

    def extra_rule_paths(self) -> list[Path]:
        """`GUARDCTL_RULES`: extra rule files or folders, `:`-separated, after the bundled ones."""
        raw = self.environ.get("GUARDCTL_RULES", "")
        return [Path(p).expanduser() for p in raw.split(":") if p]

    def rule_paths(self, extra: tuple[str, ...] = ()) -> list[Path]:
        from guardctl.bundled import bundled_rules_dir

        if "" in extra:
            raise UsageError("--rules needs a rules file or folder, not an empty string")
        return [bundled_rules_dir(), *self.extra_rule_paths(), *(Path(p) for p in extra)]

    def policy_context(self) -> PolicyContext:
        """What the rules' placeholders stand for: the real paths the self-protection rules
        guard (`@protected`), and the managed contexts (`@context`) and their API servers
        (`@cluster`)."""
        found = self._managed()
        # (the process's HOME too: `~` in those variables is expanded with it)
        made_from = (self.home, os.environ.get("HOME"),
                     *(self.environ.get(name) for name in _PLACES))
        for earlier, earlier_found, made in _MADE:
            if earlier == made_from and earlier_found is found:
                return made
        made = self._policy_context(found)
        _MADE[:] = [(made_from, found, made)]
        return made

    def _policy_context(self, found: Contexts | None) -> PolicyContext:
        from guardctl.bundled import bundled_rules_dir
        from guardctl.firewall.policy import context_of
        from guardctl.runtime import socket_folder

        # the cache holds the parsed rules and config guardctl trusts: as protected as they are
        paths = [self.state_dir, self.config_path.parent, self.cache_dir, bundled_rules_dir()]
        paths += self.extra_rule_paths()
        # the fork server's socket: a stand-in server there would run the agent's commands
        paths.append(Path(socket_folder(self.environ)))
        spelled = [str(p) for p in paths]
        # an agent types `~/...` as often as the absolute path, and the shell expands it later
        spelled += [f"~/{p.relative_to(self.home)}" for p in paths if p.is_relative_to(self.home)]
        servers = [c.server for c in found.all] if found else []
        return context_of(
            protected_paths=tuple(dict.fromkeys(spelled)),
            cluster_hosts=tuple(dict.fromkeys(h for s in servers for h in _hosts(s))),
            contexts=found.names if found else (),
            plugins=frozenset(name for name, _ in found.plugins) if found else frozenset(),
            default_namespaces=_default_namespaces(found),
        )

    def _managed(self) -> Contexts | None:
        """The managed contexts and plugins; none when the config cannot be read (then
        `--context` is denied, plugins are unknown commands, and the `check` that asked still
        gets an answer)."""
        from guardctl.config import load_contexts

        try:
            return load_contexts(self.config_path, self.cache_dir)
        except UsageError:
            return None


def _default_namespaces(found: Contexts | None) -> tuple[tuple[str, str], ...]:
    """(context, namespace) of each managed context that names one; "" for the default."""
    if found is None:
        return ()
    pairs = [("", found.default.namespace)] + [(c.context, c.namespace) for c in found.all]
    return tuple((name, namespace) for name, namespace in pairs if namespace)


def _hosts(server: str) -> tuple[str, ...]:
    """How a line may name an API server: `host:port`, and the bare host where the port is
    the scheme's own."""
    scheme, _, rest = server.partition("://")
    authority = rest.partition("/")[0].rpartition("@")[2].lower()
    if not authority:
        return ()
    default_port = {"https": "443", "http": "80"}.get(scheme.lower())
    host, colon, port = authority.rpartition(":")
    if not colon or "]" in port:  # no port (an IPv6 address's colons are inside brackets)
        return (authority,)
    return (authority, host) if port == default_port else (authority,)
