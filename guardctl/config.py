"""guardctl's configuration file: which cluster, which ServiceAccount, where the secret lives.

The file (`$GUARDCTL_CONFIG`, default `$XDG_CONFIG_HOME/guardctl/config.yaml`) never holds a
secret: the credential itself is in the OS keyring under `keyring-service`. Everything here
is safe to show, back up or paste into an issue.

The file is YAML because people edit it. A run reads its JSON copy in the cache folder
instead (`stampcache`, as for the rules): importing and running a YAML parser on every agent
command would cost more than the rest of reading the file.
"""

import os
import re
import stat
from pathlib import Path
from typing import Any, NamedTuple

from guardctl import stampcache
from guardctl.errors import UsageError

CREDENTIAL_KINDS = ("token", "client-certificate", "exec")
DEFAULT_KEYRING_SERVICE = "guardctl"
DEFAULT_TTL = "1h"
# the API server refuses TokenRequests shorter than ten minutes
MIN_TTL_SECONDS = 600
# a Go duration as kubectl's --duration takes it, restricted to whole h/m/s parts
_TTL = re.compile(r"(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?")
# a Kubernetes object name (DNS-1123 subdomain)
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
CACHE_PREFIX = "config"


def ttl_seconds(ttl: str) -> int:
    """Seconds in a duration such as `1h`, `90m` or `1h30m`; UsageError when malformed or < 10m."""
    match = _TTL.fullmatch(ttl)
    if not ttl or match is None:
        raise UsageError(f"token TTL {ttl!r} is not a duration such as 1h, 30m or 1h30m")
    seconds = sum(int(match[unit] or 0) * size for unit, size in (("h", 3600), ("m", 60), ("s", 1)))
    if seconds < MIN_TTL_SECONDS:
        raise UsageError(f"token TTL {ttl!r} is shorter than the API server's minimum of 10m")
    return seconds


def split_service_account(text: str) -> tuple[str, str]:
    """`NS/NAME` -> (NS, NAME); UsageError unless both are valid object names."""
    namespace, _, name = text.partition("/")
    if not (_NAME.fullmatch(namespace) and _NAME.fullmatch(name)):
        raise UsageError(f"service account {text!r} is not NAMESPACE/NAME")
    return namespace, name


class Config(NamedTuple):
    """What `guardctl creds import` recorded. Field names map to YAML keys with `-` for `_`.

    Build one with `Config.of`, which checks the values.
    """

    context: str  # the kubeconfig context the credential came from
    cluster: str
    user: str  # the kubeconfig user whose credential is now in the keyring
    server: str
    certificate_authority_data: str  # base64 PEM, public; "" trusts the system roots
    namespace: str  # the context's default namespace
    service_account: str  # NS/NAME the agent's short-lived tokens are minted for
    credential: str  # one of CREDENTIAL_KINDS
    token_ttl: str = DEFAULT_TTL
    keyring_service: str = DEFAULT_KEYRING_SERVICE
    # the broker socket this account's commands go to ("": none). Every command reads it
    # with `runtime.config_broker`, without a YAML parser; it is a field here so that a file
    # holding both loads, and `creds import` keeps it
    broker: str = ""

    @classmethod
    def of(cls, **values: str) -> "Config":
        """A checked Config; UsageError names the first bad value."""
        config = cls(**values)
        split_service_account(config.service_account)
        ttl_seconds(config.token_ttl)
        if config.credential not in CREDENTIAL_KINDS:
            kinds = ", ".join(CREDENTIAL_KINDS)
            raise UsageError(f"credential kind {config.credential!r} is not one of {kinds}")
        return config

    @property
    def sa_namespace(self) -> str:
        return split_service_account(self.service_account)[0]

    @property
    def sa_name(self) -> str:
        return split_service_account(self.service_account)[1]

    @property
    def ttl_seconds(self) -> int:
        return ttl_seconds(self.token_ttl)


def _key(field_name: str) -> str:
    return field_name.replace("_", "-")


_FIELDS = {_key(name): name for name in Config._fields}
_REQUIRED = [key for key, name in _FIELDS.items() if name not in Config._field_defaults]
# settings of the whole file, which every context shares
_SHARED = ("keyring-service", "broker")
# the key of the list of contexts beside the default one
CONTEXTS_KEY = "contexts"
# the key of the kubectl plugins the agent may run: NAME -> absolute path of `kubectl-NAME`
PLUGINS_KEY = "plugins"
# the key of the gitleaks rule files whose rules mask output beside guardctl's own
DETECTORS_KEY = "detectors"
# the recording settings: guardctl.recording.retention reads and checks the first two,
# guardctl.shipping.shipper `ship` (where records are shipped off the machine)
RECORDING_KEYS = ("retention", "cast-max-size", "ship")
# the approval settings (guardctl.approvals.webhook reads and checks them)
APPROVALS_KEY = "approvals"
# settings other modules read and check; a rewrite of the file keeps them as they are
KEPT_KEYS = (*RECORDING_KEYS, APPROVALS_KEY)
# a plugin name kubectl finds from one word (`kubectl foo-bar` runs `kubectl-foo_bar`)
_PLUGIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


class Contexts(NamedTuple):
    """Every context a configuration file holds a credential for, the default one first.

    The file's top-level settings are the default context (a file from before there were
    several is one of these); `contexts:` lists the others, each with its own cluster, user
    and ServiceAccount, sharing the file's keyring service and broker. `--context NAME`
    chooses one, as with kubectl.
    """

    default: Config
    others: tuple[Config, ...] = ()
    # (name, path) of each kubectl plugin the agent may run, as `plugins:` lists them
    plugins: tuple[tuple[str, str], ...] = ()
    # gitleaks rule files (absolute paths) whose rules mask output too, as `detectors:` lists
    detector_files: tuple[str, ...] = ()

    @property
    def all(self) -> tuple[Config, ...]:
        return (self.default, *self.others)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.context for c in self.all)

    def named(self, name: str | None) -> Config | None:
        """The context `--context NAME` chooses (None: the default); None when not held."""
        if name is None:
            return self.default
        return next((c for c in self.all if c.context == name), None)

    def with_context(self, config: Config) -> "Contexts":
        """These contexts with `config` in place of the one of its name, or added."""
        if config.context == self.default.context:
            return self._replace(default=config)
        kept = tuple(config if c.context == config.context else c for c in self.others)
        return self._replace(others=kept if config in kept else (*kept, config))

    def without(self, name: str) -> "Contexts | None":
        """These contexts without the one called `name`: when that was the default, the
        next one becomes it. None when no context is left."""
        kept = tuple(c for c in self.all if c.context != name)
        if not kept:
            return None
        return self._replace(default=kept[0], others=kept[1:])


def _settings(path: Path, data: Any, where: str, shared: dict[str, str] | None) -> Config:
    """One context's settings; `shared`: the file's own (None: these are the file's)."""
    if not isinstance(data, dict):
        raise UsageError(f"{path}: {where}expected a mapping of settings")
    for key, value in data.items():
        if key not in _FIELDS or (shared is not None and key in _SHARED):
            raise UsageError(f"{path}: {where}unknown key {key!r}")
        if not isinstance(value, str):
            raise UsageError(f"{path}: {where}key {key!r} must be a string")
    missing = [key for key in _REQUIRED if key not in data]
    if missing:
        raise UsageError(f"{path}: {where}missing key {missing[0]!r}")
    try:
        settings = {**data, **(shared or {})}
        return Config.of(**{_FIELDS[key]: value for key, value in settings.items()})
    except UsageError as err:
        raise UsageError(f"{path}: {where}{err}") from err


def _plugins(path: Path, data: Any) -> tuple[tuple[str, str], ...]:
    """`plugins:`, checked: names kubectl would look up, absolute paths; not kubectl's own
    commands (kubectl runs its own command, never a plugin of that name)."""
    from guardctl.firewall.flagtable import ROOT, flag_table

    if not isinstance(data, dict):
        raise UsageError(f"{path}: {PLUGINS_KEY!r} must map plugin names to their paths")
    for name, where in data.items():
        if not isinstance(name, str) or not _PLUGIN_NAME.fullmatch(name):
            raise UsageError(f"{path}: plugin name {name!r} is not one word kubectl would run")
        if flag_table().child(ROOT, name):
            raise UsageError(f"{path}: plugin {name!r} is a kubectl command of its own")
        if not isinstance(where, str) or not os.path.isabs(where):
            raise UsageError(f"{path}: plugin {name!r} needs the absolute path of its program")
    return tuple(sorted(data.items()))


def _detector_files(path: Path, data: dict[str, Any]) -> tuple[str, ...]:
    files = data.get(DETECTORS_KEY, [])
    if not isinstance(files, list) or not all(
        isinstance(f, str) and os.path.isabs(f) for f in files
    ):
        raise UsageError(f"{path}: {DETECTORS_KEY!r} must list absolute paths of gitleaks "
                         "rule files")
    return tuple(files)


def load_detector_files(path: Path, cache_dir: Path | None = None) -> tuple[str, ...]:
    """The gitleaks rule files the config at `path` lists (also in a file with no context)."""
    contexts = load_contexts(path, cache_dir)
    if contexts is not None:
        return contexts.detector_files
    try:
        text = _read_config(path)
    except FileNotFoundError:
        return ()
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"{path}: cannot read: {err}") from err
    data = _parse_yaml(path, text)
    return _detector_files(path, data) if isinstance(data, dict) else ()


def load_recording(path: Path, cache_dir: Path | None = None) -> dict[str, Any]:
    """The recording settings (RECORDING_KEYS) the config at `path` holds, unchecked; empty
    when there is no file. Runs read the JSON copy in `cache_dir` while the file is
    unchanged (see `stampcache`)."""
    return load_kept(path, cache_dir, RECORDING_KEYS, "recording")


def load_approvals(path: Path, cache_dir: Path | None = None) -> Any:
    """The `approvals:` setting the config at `path` holds, unchecked; None without one."""
    return load_kept(path, cache_dir, (APPROVALS_KEY,), APPROVALS_KEY).get(APPROVALS_KEY)


def load_kept(
    path: Path, cache_dir: Path | None, keys: tuple[str, ...] = KEPT_KEYS, prefix: str = "kept"
) -> dict[str, Any]:
    """Those of `keys` the config at `path` holds, unchecked (their modules check them); the
    JSON copy in `cache_dir` named by `prefix` while the file is unchanged."""
    copy = stampcache.entry(cache_dir, prefix, [path]) if cache_dir is not None else None
    cached = copy.read() if copy is not None else None
    if isinstance(cached, dict):
        return cached
    try:
        text = _read_config(path)
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"{path}: cannot read: {err}") from err
    data = _parse_yaml(path, text)
    found = {k: data[k] for k in keys if k in data} if isinstance(data, dict) else {}
    if copy is not None:
        copy.write(found)
    return found


def _from_mapping(path: Path, data: Any) -> Contexts:
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping of settings")
    listed = data.get(CONTEXTS_KEY, [])
    if not isinstance(listed, list):
        raise UsageError(f"{path}: {CONTEXTS_KEY!r} must be a list of contexts")
    plugins = _plugins(path, data.get(PLUGINS_KEY, {}))
    files = _detector_files(path, data)
    lists = (CONTEXTS_KEY, PLUGINS_KEY, DETECTORS_KEY, *KEPT_KEYS)
    own = {k: v for k, v in data.items() if k not in lists}
    default = _settings(path, own, "", None)
    shared = {key: data[key] for key in _SHARED if key in data}
    others = tuple(
        _settings(path, item, f"{CONTEXTS_KEY}[{n}]: ", shared)
        for n, item in enumerate(listed)
    )
    names = [c.context for c in (default, *others)]
    twice = next((name for name in names if names.count(name) > 1), None)
    if twice is not None:
        raise UsageError(f"{path}: context {twice!r} is listed twice")
    return Contexts(default, others, plugins, files)


def load_config(path: Path, cache_dir: Path | None = None) -> Config | None:
    """The default context's configuration at `path`, or None when there is no such file."""
    contexts = load_contexts(path, cache_dir)
    return contexts.default if contexts is not None else None


def load_contexts(path: Path, cache_dir: Path | None = None) -> Contexts | None:
    """The contexts configured at `path`, or None when there is no such file.

    With `cache_dir`, the file's JSON copy there is read while the file is unchanged (see
    `stampcache`); else the YAML is parsed and the copy written.
    """
    copy = stampcache.entry(cache_dir, CACHE_PREFIX, [path]) if cache_dir is not None else None
    if copy is not None:
        built = _BUILT.get(copy)
        if built is not None:
            return built
        cached = copy.read()
        if cached is not None:
            try:
                contexts = _from_mapping(path, cached)
            except UsageError:
                pass  # a damaged copy: the file itself decides
            else:
                _BUILT.put(copy, contexts)
                return contexts
    try:
        text = _read_config(path)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"{path}: cannot read: {err}") from err
    data = _parse_yaml(path, text)
    if data is None:
        return None  # an empty file: nothing configured yet
    if isinstance(data, dict) and data.keys() <= {
        *_SHARED, PLUGINS_KEY, DETECTORS_KEY, *KEPT_KEYS
    }:
        return None  # only where the broker is (an agent's file in broker mode): no context
    contexts = _from_mapping(path, data)
    if copy is not None:
        copy.write(data)
        _BUILT.put(copy, contexts)
    return contexts


# the contexts built in this process, by their files' stamps: a run loads them several times
_BUILT: stampcache.Built[Contexts] = stampcache.Built()


def _read_config(path: Path) -> str:
    """The config file's text; UsageError for a FIFO, socket or folder (reading a FIFO would
    wait for a writer forever). FileNotFoundError passes on."""
    mode = path.stat().st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISCHR(mode)):
        raise UsageError(f"{path} is not a regular file: point GUARDCTL_CONFIG at a file")
    return path.read_text(encoding="utf-8")


def _parse_yaml(path: Path, text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise UsageError(f"{path}: not valid YAML: {err}".splitlines()[0]) from err


def save_config(path: Path, config: Config | Contexts) -> None:
    """Write `config` (one context, or several) atomically: a 0600 temp file, then rename
    over `path`. A folder made for it is private (0700); a folder that was there is left as
    it is (GUARDCTL_CONFIG may name a file in /etc, or in /dev)."""
    created = not path.parent.exists()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if created:
        os.chmod(path.parent, 0o700)  # mkdir's mode is masked by umask
    import yaml

    from guardctl.atomic import write_atomic

    contexts = config if isinstance(config, Contexts) else Contexts(config)
    data: dict[str, Any] = _settings_of(contexts.default, ())
    if contexts.others:
        data[CONTEXTS_KEY] = [_settings_of(c, _SHARED) for c in contexts.others]
    if contexts.plugins:
        data[PLUGINS_KEY] = dict(contexts.plugins)
    if contexts.detector_files:
        data[DETECTORS_KEY] = list(contexts.detector_files)
    data.update(load_kept(path, None))  # kept as they are: this module does not read them
    write_atomic(path, yaml.safe_dump(data, sort_keys=False))


def save_settings_only(path: Path, old: Contexts) -> None:
    """Rewrite the file at `path` without any context, keeping the settings that are not a
    context's (`broker`, `plugins`, `detectors`, the recording's, `approvals`); remove it
    when none is left."""
    data: dict[str, Any] = {"broker": old.default.broker} if old.default.broker else {}
    if old.plugins:
        data[PLUGINS_KEY] = dict(old.plugins)
    if old.detector_files:
        data[DETECTORS_KEY] = list(old.detector_files)
    data.update(load_kept(path, None))
    if not data:
        path.unlink(missing_ok=True)
        return
    import yaml

    from guardctl.atomic import write_atomic

    write_atomic(path, yaml.safe_dump(data, sort_keys=False))


def _settings_of(config: Config, leave_out: tuple[str, ...]) -> dict[str, str]:
    return {
        _key(name): value for name, value in config._asdict().items()
        if _key(name) not in leave_out
        and (value or name != "broker")  # no broker: no line, as before there were brokers
    }
