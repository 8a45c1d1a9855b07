"""Credentials: the user's kubeconfig credential in the OS keyring, short-lived agent tokens.

`guardctl creds import` moves one kubeconfig user's credential (token, client certificate
or exec plugin) into the keyring and records the cluster and the agent's ServiceAccount
in the config file, which holds no secret. Before each kubectl run `mint_token` asks the
API server for a short-lived ServiceAccount token (TokenRequest), by running the real
kubectl with a private kubeconfig that holds the stored credential for a moment; so
client certificates and exec plugins work without guardctl speaking TLS client auth.
The minted token is cached in the keyring too, and in front of that in the kernel keyring
(`tokencache`): a run that finds a reusable token there does not import `keyring` at all,
nor read the long-lived credential. Concurrent runs mint one token: one process mints
while the others wait on its lock file, then reuse its token. A run never writes the
long-lived credential; with a file-backed keyring (keyrings.alt, which rewrites its whole
file on each write) tokens go to a file of their own beside the credential's, and every
access holds a lock beside the file, so neither can be lost to a concurrent write. A
damaged or unreadable keyring file is reported in one line naming it, and left as it is.

No function here prints, logs or puts a credential or token into an error message.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from guardctl import locks
from guardctl.config import (
    DEFAULT_KEYRING_SERVICE,
    Config,
    Contexts,
    load_contexts,
    save_config,
)
from guardctl.env import Environment
from guardctl.errors import UnsafeError, UsageError
from guardctl.running import tokencache
from guardctl.running.tokencache import Token
from guardctl.runtime import config_broker

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

Clock = Callable[[], float]
_T = TypeVar("_T")
MINT_TIMEOUT_SECONDS = 60
# a process minting a token holds the mint lock for one kubectl call at most; the keyring
# file's lock is held for one read or write
MINT_LOCK_WAIT_SECONDS = MINT_TIMEOUT_SECONDS + 30
KEYRING_LOCK_WAIT_SECONDS = 30
# a file-backed keyring's tokens are kept in `keyring_pass<TAG>.cfg` beside `keyring_pass.cfg`
TOKEN_FILE_TAG = ".guardctl-tokens"
# how to recover from a damaged keyring file, when the context is not known
REIMPORT = "import the credential again with `guardctl creds import`"
TOKENS_ONLY = "run again: it holds only cached tokens, and guardctl mints a new one"
# credential and CA files are small; a bigger one is the wrong file
MAX_FILE_BYTES = 1024 * 1024
# an error line from kubectl shown to the user is cut here
MAX_ERROR_CHARS = 200
# the keys of the kubeconfig user stanza stored for each credential kind
STANZA_KEYS = {
    "token": ("token",),
    "client-certificate": ("client-certificate-data", "client-key-data"),
    "exec": ("exec",),
}
# kubeconfig user keys that carry a credential, by the kind they belong to
_USER_KEYS = {
    "token": "token", "token-file": "token",
    "client-certificate": "client-certificate", "client-certificate-data": "client-certificate",
    "client-key": "client-certificate", "client-key-data": "client-certificate",
    "exec": "exec",
}
# user settings guardctl cannot carry into the agent's kubeconfig: refusing beats silently
# dropping them
_UNSUPPORTED_USER_KEYS = (
    "username", "password", "auth-provider", "as", "as-uid", "as-groups", "as-user-extra",
)
_UNSUPPORTED_CLUSTER_KEYS = ("proxy-url", "tls-server-name")


def _import_hint(config: Config | None) -> str:
    if config is None:
        return "`guardctl creds import --service-account NS/NAME`"
    return (f"`guardctl creds import --context {config.context} "
            f"--service-account {config.service_account}`")


# --------------------------------------------------------------------------- keyring
# `keyring` is imported only here, when a run must reach the OS keyring: its import alone
# costs more than a kubectl call.


def _keyring_error(err: Exception, file: Path | None, then: str) -> UnsafeError:
    """One line for a keyring failure; for a file-backed keyring, naming its file."""
    import configparser

    import keyring.errors

    if isinstance(err, keyring.errors.KeyringLocked):
        return UnsafeError("the keyring is locked: unlock it (log in to your desktop) and retry")
    if isinstance(err, (keyring.errors.NoKeyringError, keyring.errors.InitError)):
        return UnsafeError(
            "no usable keyring: install a keyring backend or set PYTHON_KEYRING_BACKEND"
        )
    # the exception's text is not shown: a backend could echo what it was given
    if file is not None and isinstance(err, (ValueError, configparser.Error)):
        if isinstance(err, UnicodeDecodeError):
            what = "it is not UTF-8 text"
        elif isinstance(err, configparser.Error):
            what = "it is not in the INI form its backend writes"
        else:
            what = "an entry in it cannot be decoded"
        return UnsafeError(f"the keyring file {file} is damaged ({what}); guardctl left it "
                           f"unchanged: move it aside (`mv {file} {file}.damaged`) and {then}")
    if file is not None and isinstance(err, OSError):
        return UnsafeError(f"cannot use the keyring file {file} ({err.strerror or 'error'}): "
                           "make it a file of yours that you may read and write (chmod 600), "
                           f"or move it aside and {then}")
    return UnsafeError(f"the keyring could not be used ({type(err).__name__}): {KEYRING_FIX}")


# how to get a keyring that opens: the common causes are a desktop keyring with no desktop
# session (SecretService needs D-Bus) and a backend name that does not load
KEYRING_FIX = ("if it needs a desktop session (D-Bus), run guardctl in one; or choose another "
               "backend with PYTHON_KEYRING_BACKEND (`keyring --list-backends` lists them)")
# an init error's text is cut here (it names the backend's problem, never a secret: nothing
# was handed to the backend yet)
MAX_REASON_CHARS = 160


def _open_backend() -> KeyringBackend:
    """keyring's backend, honouring PYTHON_KEYRING_BACKEND; a backend that cannot be loaded
    or started (a misspelt name, SecretService without D-Bus) is a one-line UnsafeError."""
    import keyring

    chosen = os.environ.get("PYTHON_KEYRING_BACKEND", "")
    try:
        return _keyring_call(keyring.get_keyring)
    except UnsafeError:
        raise
    except (ImportError, AttributeError) as err:
        raise UnsafeError(f"PYTHON_KEYRING_BACKEND={chosen} names no keyring backend that can "
                          f"be loaded ({type(err).__name__}): fix it or unset it "
                          "(`keyring --list-backends` lists them)") from err
    except Exception as err:  # noqa: BLE001 - keyring ran the backend's own start-up code
        reason = str(err).splitlines()[0][:MAX_REASON_CHARS] if str(err) else type(err).__name__
        name = chosen or "keyring's choice"
        raise UnsafeError(f"cannot open the keyring {name} ({reason}): {KEYRING_FIX}") from err


def _keyring_call(call: Callable[[], _T], file: Path | None = None,
                  then: str = REIMPORT) -> _T:
    """`call()`, with keyring errors turned into one-line UnsafeErrors."""
    import configparser

    import keyring.errors

    try:
        return call()
    except (keyring.errors.KeyringError, OSError, ValueError, configparser.Error) as err:
        raise _keyring_error(err, file, then) from err


def _check_file(file: Path, then: str) -> None:
    """Refuse a keyring file that is there but not a readable regular file: its backend would
    take it for an empty keyring (and a write would then replace it)."""
    try:
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    finally:
        os.close(fd)
    if not regular:
        raise UnsafeError(f"the keyring file {file} is not a regular file: move it aside and "
                          f"{then}")


class Vault:
    """guardctl's entries in the keyring, with keyring errors turned into one-line UnsafeErrors.

    `backend` None means keyring's own choice (honouring PYTHON_KEYRING_BACKEND). A
    file-backed keyring (keyrings.alt) keeps every entry in one file and rewrites it whole on
    each write, with no lock of its own: guardctl holds a lock file beside it, shared to read
    and exclusive to write, so concurrent guardctl processes neither lose each other's
    entries nor read a half-written file. `then` says how to recover from a damaged file.
    """

    def __init__(self, service: str, backend: KeyringBackend | None = None, *,
                 then: str = REIMPORT) -> None:
        self.service = service
        self._backend = backend
        self._then = then

    @property
    def backend(self) -> KeyringBackend:
        if self._backend is None:
            self._backend = _open_backend()
        return self._backend

    @property
    def file(self) -> Path | None:
        """The one file a file-backed keyring keeps every entry in; None for other backends."""
        path = getattr(self.backend, "file_path", None)
        return Path(path) if isinstance(path, str) and path else None

    def _use(self, call: Callable[[], _T], *, write: bool) -> _T:
        file = self.file
        if file is None:
            return _keyring_call(call)
        if write:
            _keyring_call(lambda: os.makedirs(file.parent, mode=0o700, exist_ok=True), file,
                          self._then)
        elif not file.parent.is_dir():
            return _keyring_call(call)  # no keyring file yet, nobody writing one
        busy = (f"the keyring file {file} stayed locked by another process for "
                f"{KEYRING_LOCK_WAIT_SECONDS}s: retry, or end the process that holds "
                f"{file}.lock (`fuser {file}.lock`)")
        with locks.hold(Path(f"{file}.lock"), exclusive=write, wait=KEYRING_LOCK_WAIT_SECONDS,
                        busy=busy):
            _keyring_call(lambda: _check_file(file, self._then), file, self._then)
            return _keyring_call(call, file, self._then)

    def get(self, name: str) -> str | None:
        return self._use(lambda: self.backend.get_password(self.service, name), write=False)

    def set(self, name: str, value: str) -> None:
        self._use(lambda: self.backend.set_password(self.service, name, value), write=True)

    def delete(self, name: str) -> None:
        def delete_if_present() -> None:
            if self.backend.get_password(self.service, name) is not None:
                self.backend.delete_password(self.service, name)

        self._use(delete_if_present, write=True)

    def where(self, before: str = " (", after: str = ")") -> str:
        """`file PATH` for a file-backed keyring, between `before` and `after`; else nothing."""
        file = self.file
        return f"{before}file {file}{after}" if file is not None else ""

    def tokens(self) -> Vault:
        """Where minted tokens are cached: this keyring, except that a file-backed one gets a
        file of its own beside this one, so that caching a token never rewrites the file
        holding the long-lived credential (a run never writes that file)."""
        file = self.file
        if file is None:
            return self
        backend: Any = type(self.backend)()
        backend.file_path = str(file.with_name(f"{file.stem}{TOKEN_FILE_TAG}{file.suffix}"))
        return Vault(self.service, backend, then=TOKENS_ONLY)


def credential_entry(config: Config) -> str:
    return f"credential:{config.context}"


def token_entry(config: Config) -> str:
    return f"token:{config.context}"


def _vault(config: Config, backend: KeyringBackend | None) -> Vault:
    return Vault(config.keyring_service, backend,
                 then=f"import the credential again with {_import_hint(config)}")


# --------------------------------------------------------------------------- reading a kubeconfig


def default_kubeconfig(env: Environment) -> Path:
    """The first `$KUBECONFIG` entry, else ~/.kube/config."""
    first = next((p for p in env.environ.get("KUBECONFIG", "").split(os.pathsep) if p), "")
    return Path(first).expanduser() if first else env.home / ".kube" / "config"


def _mapping(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UsageError(f"{where}: expected a mapping")
    return value


def _string(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise UsageError(f"{where}: expected a non-empty string")
    return value


def _named(doc: Mapping[str, Any], section: str, name: str, path: Path) -> dict[str, Any]:
    """The body of the `section` entry called `name` (`clusters` -> its `cluster` mapping)."""
    entries = doc.get(section) or []
    if not isinstance(entries, list):
        raise UsageError(f"{path}: {section} must be a list")
    for entry in entries:
        if isinstance(entry, dict) and entry.get("name") == name:
            return _mapping(entry.get(section[:-1]), f"{path}: {section[:-1]} {name!r}")
    raise UsageError(f"{path}: no {section[:-1]} named {name!r}")


def _read_file(name: str, base: Path, where: str) -> bytes:
    """A file a kubeconfig names; relative paths are relative to the kubeconfig, as in kubectl."""
    path = base / Path(name).expanduser()
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise UsageError(f"{where}: cannot read {path}: {err.strerror}") from err
    if len(data) > MAX_FILE_BYTES or not data.strip():
        raise UsageError(f"{where}: {path} is empty or too large")
    return data


def _data(user: Mapping[str, Any], key: str, base: Path, where: str) -> str:
    """`KEY-data` as given, or base64 of the file `KEY` names."""
    if user.get(f"{key}-data"):
        return _string(user[f"{key}-data"], f"{where}: {key}-data")
    if user.get(key):
        raw = _read_file(_string(user[key], f"{where}: {key}"), base, where)
        return base64.b64encode(raw).decode("ascii")
    raise UsageError(f"{where}: has no {key} or {key}-data")


def _exec_stanza(value: object, base: Path, where: str) -> dict[str, Any]:
    stanza = dict(_mapping(value, f"{where}: exec"))
    command = _string(stanza.get("command"), f"{where}: exec command")
    # kubectl resolves a relative command with a slash against the kubeconfig's folder; the
    # private kubeconfig lives elsewhere
    if "/" in command and not Path(command).is_absolute():
        stanza["command"] = str((base / command).resolve())
    return stanza


def _user_stanza(user: Mapping[str, Any], base: Path, where: str) -> tuple[str, dict[str, Any]]:
    """(kind, the kubeconfig user stanza to store) for a kubeconfig user."""
    for key in _UNSUPPORTED_USER_KEYS:
        if user.get(key):
            raise UsageError(f"{where}: uses {key!r}, which guardctl cannot import "
                             "(supported: token, client certificate, exec plugin)")
    kinds = sorted({_USER_KEYS[key] for key in user if key in _USER_KEYS and user[key]})
    if len(kinds) != 1:
        found = ", ".join(kinds) or "none"
        raise UsageError(f"{where}: needs exactly one credential (found: {found})")
    kind = kinds[0]
    if kind == "exec":
        return kind, {"exec": _exec_stanza(user["exec"], base, where)}
    if kind == "client-certificate":
        return kind, {f"{key}-data": _data(user, key, base, where)
                      for key in ("client-certificate", "client-key")}
    token = user.get("token") or _read_file(
        _string(user.get("token-file"), f"{where}: token-file"), base, where
    ).decode("utf-8", "replace")
    return kind, {"token": _string(token, f"{where}: token").strip()}


def _cluster_fields(cluster: Mapping[str, Any], base: Path, where: str) -> tuple[str, str]:
    """(server, certificate-authority-data) of a kubeconfig cluster."""
    if cluster.get("insecure-skip-tls-verify"):
        raise UsageError(f"{where}: skips TLS verification; guardctl will not send credentials "
                         "to a server it cannot verify")
    for key in _UNSUPPORTED_CLUSTER_KEYS:
        if cluster.get(key):
            raise UsageError(f"{where}: uses {key!r}, which guardctl does not support yet")
    server = _string(cluster.get("server"), f"{where}: server")
    has_ca = cluster.get("certificate-authority-data") or cluster.get("certificate-authority")
    ca_data = _data(cluster, "certificate-authority", base, where) if has_ca else ""
    return server, ca_data


def _load_kubeconfig(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot read kubeconfig {path}: {err}") from err
    import yaml

    try:
        return _mapping(yaml.safe_load(text), str(path))
    except yaml.YAMLError as err:
        raise UsageError(f"{path}: not valid YAML") from err


# --------------------------------------------------------------------------- import


def import_credentials(
    env: Environment, kubeconfig: str | None, context: str | None, service_account: str,
    ttl: str, *, backend: KeyringBackend | None = None,
) -> Config:
    """Move a kubeconfig context's credential into the keyring and write guardctl's config.

    The user's kubeconfig is only read; `import_advice` says how to remove the credential
    from it. A token cached for an earlier import is dropped.
    """
    path = Path(kubeconfig).expanduser() if kubeconfig else default_kubeconfig(env)
    doc = _load_kubeconfig(path)
    held = load_contexts(env.config_path)  # a broken file stops the import before any change
    context_name = context or _string(doc.get("current-context"), f"{path}: current-context")
    ctx = _named(doc, "contexts", context_name, path)
    cluster_name = _string(ctx.get("cluster"), f"{path}: context {context_name!r} cluster")
    user_name = _string(ctx.get("user"), f"{path}: context {context_name!r} user")
    server, ca_data = _cluster_fields(_named(doc, "clusters", cluster_name, path), path.parent,
                                      f"{path}: cluster {cluster_name!r}")
    kind, stanza = _user_stanza(_named(doc, "users", user_name, path), path.parent,
                                f"{path}: user {user_name!r}")
    config = Config.of(
        context=context_name, cluster=cluster_name, user=user_name, server=server,
        certificate_authority_data=ca_data, namespace=str(ctx.get("namespace") or ""),
        service_account=service_account, credential=kind, token_ttl=ttl,
        broker=config_broker(str(env.config_path)) or "",  # its `broker:` line stays
        # the file's keyring service is every context's
        keyring_service=held.default.keyring_service if held else DEFAULT_KEYRING_SERVICE,
    )
    vault = _vault(config, backend)
    vault.set(credential_entry(config), json.dumps(stanza))
    tokens = vault.tokens()
    tokens.delete(token_entry(config))
    if tokens is not vault:  # a token an earlier guardctl cached beside the credential
        vault.delete(token_entry(config))
    save_config(env.config_path, held.with_context(config) if held else Contexts(config))
    fast = kernel_cache(env, config)
    if fast is not None:
        fast.drop()
    return config


def import_advice(config: Config, kubeconfig: str | None, env: Environment) -> list[str]:
    """What to tell the user after an import: where the credential is, how to drop the copy."""
    path = Path(kubeconfig).expanduser() if kubeconfig else default_kubeconfig(env)
    return [
        f"stored the {config.credential} credential of user {config.user!r} in the keyring "
        f"(service {config.keyring_service!r}); config written to {env.config_path}",
        f"the agent will get tokens for ServiceAccount {config.service_account} "
        f"lasting {config.token_ttl}",
        f"guardctl did not change {path}: you may now remove the credential from it, e.g. "
        f"`kubectl config unset users.{config.user}`, so the agent cannot read it",
    ]


# --------------------------------------------------------------------------- minting


def require_config(env: Environment, context: str | None = None) -> Config:
    """The configuration of `context` (None: the default one), or the one-line UnsafeError
    telling the user to import a credential."""
    contexts = load_contexts(env.config_path, env.cache_dir)
    if contexts is None:
        raise UnsafeError(f"no credentials: run {_import_hint(None)}")
    config = contexts.named(context)
    if config is None:
        held = ", ".join(contexts.names)
        raise UnsafeError(f"guardctl holds no credential for context {context!r} (it has: {held}): "
                          f"run `guardctl creds import --context {context} "
                          "--service-account NAMESPACE/NAME`")
    return config


def load_credential(config: Config, backend: KeyringBackend | None = None) -> dict[str, Any]:
    """The stored kubeconfig user stanza; UnsafeError when missing or damaged."""
    vault = _vault(config, backend)
    raw = vault.get(credential_entry(config))
    if raw is None:
        raise UnsafeError(f"no credential for context {config.context!r} in the keyring"
                          f"{vault.where()}: run {_import_hint(config)}")
    try:
        stanza = json.loads(raw)
    except ValueError:
        stanza = None
    keys = STANZA_KEYS[config.credential]
    if not isinstance(stanza, dict) or sorted(stanza) != sorted(keys):
        raise UnsafeError(f"the stored credential for context {config.context!r} is damaged"
                          f"{vault.where()}: run {_import_hint(config)}")
    return stanza


def kernel_cache(env: Environment, config: Config) -> tokencache.KernelCache | None:
    """This config's token in the kernel keyring; None where that cannot be used."""
    keyring = tokencache.kernel_keyring()
    if keyring is None:
        return None
    name = tokencache.description(env.config_path, config)
    return tokencache.KernelCache(keyring, name, config.server, config.service_account)


def _cached_token(vault: Vault, config: Config) -> Token | None:
    """The token cached in the OS keyring, if it was minted for this server and
    ServiceAccount and is readable."""
    return tokencache.decode(vault.get(token_entry(config)), config.server,
                             config.service_account)


def _store_token(vault: Vault, config: Config, token: Token) -> None:
    vault.set(token_entry(config),
              tokencache.encode(token, config.server, config.service_account))


def _timestamp(text: object) -> float | None:
    if not isinstance(text, str):
        return None
    from datetime import datetime

    try:
        # Python 3.10's fromisoformat does not take the "Z" suffix
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def parse_token_request(output: bytes, issued_at: float, ttl_seconds: int,
                        mask_digests: tuple[str, ...]) -> Token:
    """The token in `kubectl create token -o json` output (a TokenRequest); `mask_digests`
    are the digests of the secrets of the credential that minted it.

    The expiry is the earlier of what the server says and issue time + requested TTL, so a
    server clock ahead of ours never makes a token look fresher than it is.
    """
    try:
        status = json.loads(output)["status"]
        value = status["token"]
    except (ValueError, KeyError, TypeError) as err:
        raise UnsafeError("kubectl create token did not print a TokenRequest: "
                          "use kubectl 1.24 or newer") from err
    if not isinstance(value, str) or not value:
        raise UnsafeError("the API server returned an empty token")
    expires = issued_at + ttl_seconds
    server_expiry = _timestamp(status.get("expirationTimestamp"))
    return Token(value, min(expires, server_expiry or expires), issued_at, mask_digests)


def _refusal(config: Config, stderr: bytes, secrets: list[str]) -> UnsafeError:
    """One line for a failed `kubectl create token`, by the HTTP status kubectl reports."""
    text = stderr.decode("utf-8", "replace")
    account = config.service_account
    if "Unauthorized" in text:
        return UnsafeError(f"the stored credential for context {config.context!r} was refused "
                           f"(expired or revoked): re-import it with {_import_hint(config)}")
    if "forbidden" in text.lower():
        return UnsafeError(f"the stored credential for context {config.context!r} may not mint "
                           f"tokens for {account}: re-import one that may, with "
                           f"{_import_hint(config)}")
    if f'serviceaccounts "{config.sa_name}" not found' in text:
        return UnsafeError(f"ServiceAccount {account} was not found: create it, or re-import "
                           "with the right --service-account")
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "no error message")
    for secret in secrets:
        line = line.replace(secret, "***")
    return UnsafeError(f"kubectl create token failed: {line[:MAX_ERROR_CHARS]}")


def _request_token(env: Environment, config: Config, stanza: Mapping[str, Any],
                   now: float) -> Token:
    import subprocess

    from guardctl.running.kubeconfig import private_kubeconfig
    from guardctl.running.kubectl_env import mint_environ
    from guardctl.running.lifeline import die_with_this_process
    from guardctl.running.runner import NOT_FOUND, find_kubectl

    kubectl = find_kubectl(env)
    secrets = stanza_secrets(config.credential, stanza)
    with private_kubeconfig(env, config.server, config.certificate_authority_data, stanza,
                            config.namespace) as path:
        argv = [kubectl, "--kubeconfig", str(path), "create", "token", config.sa_name,
                "-n", config.sa_namespace, "--duration", config.token_ttl, "-o", "json"]
        try:
            # stdin stays closed: it belongs to the agent's own kubectl command
            result = subprocess.run(argv, env=mint_environ(env.environ, path),
                                    stdin=subprocess.DEVNULL, capture_output=True,
                                    timeout=MINT_TIMEOUT_SECONDS, check=False,
                                    preexec_fn=die_with_this_process())
        except OSError as err:
            raise UnsafeError(NOT_FOUND) from err
        except subprocess.TimeoutExpired as err:
            raise UnsafeError(f"kubectl create token got no answer in {MINT_TIMEOUT_SECONDS}s: "
                              f"check that {config.server} is reachable") from err
    if result.returncode != 0:
        raise _refusal(config, result.stderr, secrets)
    from guardctl.masking.mask import literal_digests

    return parse_token_request(result.stdout, now, config.ttl_seconds, literal_digests(secrets))


def mint_token(env: Environment, config: Config, *, backend: KeyringBackend | None = None,
               clock: Clock = time.time) -> Token:
    """A token for the agent's ServiceAccount: the cached one while fresh, else a new one.

    Looked for in the kernel keyring first (no `keyring` import, no long-lived credential
    read), then in the OS keyring; a new token goes into both. One process at a time mints
    for a configuration: the others wait for it, then reuse its token. Nothing here writes
    the long-lived credential, nor (with a file-backed keyring) the file holding it.
    """
    fast = kernel_cache(env, config)
    cached = fast.load() if fast is not None else None
    if cached is not None and cached.fresh(clock()):
        return cached
    with _minting(env, config):
        now = clock()
        token = fast.load() if fast is not None else None  # minted while this one waited
        if token is None or not token.fresh(now):
            token = _os_keyring_token(env, config, backend, now)
        if fast is not None:
            fast.save(token, now)
    return token


def _os_keyring_token(env: Environment, config: Config, backend: KeyringBackend | None,
                      now: float) -> Token:
    """The token cached in the OS keyring while fresh, else a new one, cached there."""
    tokens = _vault(config, backend).tokens()
    token = _cached_token(tokens, config)
    if token is None or not token.fresh(now):
        token = _request_token(env, config, load_credential(config, backend), now)
        _store_token(tokens, config, token)
    return token


def _minting(env: Environment, config: Config) -> AbstractContextManager[None]:
    """Held while this process looks for, or mints, `config`'s token: a lock file in
    guardctl's private runtime folder, so that concurrent runs mint one token.

    Nothing where there is no such folder (it cannot be made, or others may enter it, as
    the fork server also refuses): each run then mints its own token, which is only slower,
    for the keyring stays locked around every write.
    """
    from guardctl.runtime import private_folder, socket_folder

    folder = socket_folder(env.environ)
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    except OSError:
        return nullcontext()
    if not private_folder(folder):
        return nullcontext()
    name = tokencache.description(env.config_path, config)[len(tokencache.DESCRIPTION_PREFIX):]
    busy = (f"another guardctl has been minting a token for context {config.context!r} for "
            f"over {MINT_LOCK_WAIT_SECONDS}s: check that {config.server} is reachable")
    return locks.hold(Path(folder) / f"mint-{name}.lock", exclusive=True,
                      wait=MINT_LOCK_WAIT_SECONDS, busy=busy)


# --------------------------------------------------------------------------- masking, status


def _pem_body_lines(data: str) -> list[str]:
    try:
        pem = base64.b64decode(data, validate=True).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        return []
    return [ln.strip() for ln in pem.splitlines() if ln.strip() and "-----" not in ln]


def stanza_secrets(kind: str, stanza: Mapping[str, Any]) -> list[str]:
    """The secret strings of a stored credential (the client certificate itself is public).

    For exec plugins only the values of `env` count: that is where plugins take secrets,
    and masking every argument would hide ordinary words from the agent.
    """
    if kind == "token":
        return [stanza["token"]]
    if kind == "client-certificate":
        key = stanza["client-key-data"]
        return [key, *_pem_body_lines(key)]
    env_entries = stanza["exec"].get("env") or []
    return [str(e["value"]) for e in env_entries if isinstance(e, dict) and e.get("value")]


def _token_found(env: Environment, vault: Vault, config: Config) -> tuple[Token | None, str]:
    """The cached agent token of `config` and where it was found (kernel keyring first)."""
    fast = kernel_cache(env, config)
    cached = fast.load() if fast is not None else None
    if cached is not None:
        return cached, "the kernel keyring"
    return _cached_token(vault.tokens(), config), "the OS keyring"


def _iso(seconds: float) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(seconds).astimezone().isoformat(timespec="seconds")


def _describe_token(env: Environment, vault: Vault, config: Config, now: float) -> str:
    cached, where = _token_found(env, vault, config)
    if cached is None:
        return "agent token: none cached (one is minted on the next run)"
    when = _iso(cached.expires_at)
    left = cached.expires_at - now
    state = "expired" if left <= 0 else f"{int(left // 60)}m left"
    refresh = "" if cached.fresh(now) else ", renewed on the next run"
    return f"agent token: expires {when} ({state}{refresh}), cached in {where}"


def status(env: Environment, *, backend: KeyringBackend | None = None,
           clock: Clock = time.time) -> Iterator[str]:
    """Lines for `guardctl creds status`, each managed context in turn (the default first).
    Never shows a token or credential. A keyring that cannot be read raises UnsafeError
    after the lines before it."""
    contexts = load_contexts(env.config_path)
    if contexts is None:
        yield f"config: none at {env.config_path}: run {_import_hint(None)}"
        return
    yield f"config: {env.config_path}"
    for config in contexts.all:
        default = " [default]" if len(contexts.all) > 1 and config is contexts.default else ""
        yield f"context: {config.context}{default} (cluster {config.cluster}, user {config.user})"
        yield f"server: {config.server}"
        yield f"service account: {config.service_account} (tokens last {config.token_ttl})"
        yield from _keyring_status(env, config, backend, clock())


def _keyring_status(
    env: Environment, config: Config, backend: KeyringBackend | None, now: float
) -> Iterator[str]:
    vault = _vault(config, backend)
    kind = type(vault.backend)
    yield (f"keyring: {kind.__module__}.{kind.__name__} (service {config.keyring_service!r}"
           f"{vault.where(', ', '')})")
    present = vault.get(credential_entry(config)) is not None
    yield (f"credential: {config.credential}, "
           + ("present" if present else f"MISSING: run {_import_hint(config)}"))
    yield _describe_token(env, vault, config, now)


# keyring backends that keep secrets unencrypted on disk (keyrings.alt's file keyring)
PLAINTEXT_BACKENDS = ("PlaintextKeyring",)


def plaintext_keyring(backend: KeyringBackend | None = None) -> str | None:
    """Where the keyring keeps secrets unencrypted (`NAME, file PATH`), or None when it
    does not (UnsafeError when it cannot be opened)."""
    vault = Vault(DEFAULT_KEYRING_SERVICE, backend)
    if type(vault.backend).__name__ not in PLAINTEXT_BACKENDS:
        return None
    return backend_name(vault) + vault.where(", ", "")


def plaintext_chosen(env: Environment) -> bool:
    """PYTHON_KEYRING_BACKEND names a plaintext backend: the person chose it (a demo, a
    test, a service account's file keyring), which counts as consent to it."""
    chosen = env.environ.get("PYTHON_KEYRING_BACKEND", "")
    return chosen.rpartition(".")[2] in PLAINTEXT_BACKENDS


def backend_name(vault: Vault) -> str:
    kind = type(vault.backend)
    return f"{kind.__module__}.{kind.__name__}"


def context_rows(env: Environment, *, backend: KeyringBackend | None = None,
                 clock: Clock = time.time) -> list[dict[str, Any]]:
    """One row per managed context for `guardctl creds list`, the default first: where it
    points, its ServiceAccount, its keyring and its cached token's expiry. Never a secret.
    A keyring that cannot be read raises UnsafeError."""
    contexts = load_contexts(env.config_path)
    if contexts is None:
        return []
    now = clock()
    rows = []
    for config in contexts.all:
        vault = _vault(config, backend)
        token, where = _token_found(env, vault, config)
        rows.append({
            "context": config.context,
            "default": config is contexts.default,
            "namespace": config.namespace,
            "server": config.server,
            "cluster": config.cluster,
            "user": config.user,
            "service_account": config.service_account,
            "credential": config.credential,
            "credential_present": vault.get(credential_entry(config)) is not None,
            "token_ttl": config.token_ttl,
            "keyring": backend_name(vault),
            "keyring_service": config.keyring_service,
            "keyring_file": str(vault.file) if vault.file is not None else None,
            "token_expires": _iso(token.expires_at) if token is not None else None,
            "token_fresh": token.fresh(now) if token is not None else False,
            "token_cached_in": where if token is not None else None,
        })
    return rows


_LIST_COLUMNS = ("CURRENT", "NAME", "NAMESPACE", "SERVER", "SERVICE ACCOUNT", "KEYRING",
                 "TOKEN EXPIRES")


def format_rows(rows: list[dict[str, Any]]) -> str:
    """`creds list` as a table, the default context marked `*` (as `kubectl config
    get-contexts` marks the current one)."""
    def cells(row: dict[str, Any]) -> tuple[str, ...]:
        credential = "" if row["credential_present"] else " (credential MISSING)"
        return ("*" if row["default"] else "", row["context"], row["namespace"] or "default",
                row["server"], row["service_account"], row["keyring"].rpartition(".")[2]
                + credential, row["token_expires"] or "none cached")

    table = [_LIST_COLUMNS, *(cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(_LIST_COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in table)


def removal_plan(env: Environment, name: str, *,
                 backend: KeyringBackend | None = None) -> tuple[Config, list[str]]:
    """The context `name` and the lines saying what removing it removes, and which context
    becomes the default; UsageError when guardctl holds no such context."""
    contexts = load_contexts(env.config_path)
    config = contexts.named(name) if contexts is not None else None
    if contexts is None or config is None:
        held = ", ".join(contexts.names) if contexts is not None else "none"
        raise UsageError(f"guardctl holds no context {name!r} (it has: {held}): see "
                         "`guardctl creds list`")
    vault = _vault(config, backend)
    lines = [
        f"context {name!r} ({config.server}, ServiceAccount {config.service_account}):",
        f"  its entry in {env.config_path}",
        f"  its credential and cached tokens in the keyring {backend_name(vault)} (service "
        f"{config.keyring_service!r}{vault.where(', ', '')}), and in the kernel keyring",
    ]
    rest = contexts.without(name)
    if config is contexts.default:
        lines.append(f"  {rest.default.context!r} becomes the default context" if rest
                     else "  no context is left: guardctl will have no credentials")
    return config, lines


def remove_context(env: Environment, name: str, *,
                   backend: KeyringBackend | None = None) -> Config | None:
    """Remove context `name`: its keyring entries and cached tokens first, then its config
    entry (so a failure leaves it listed, never an entry without its secrets gone).
    Returns the default context now (None: none is left)."""
    from guardctl.config import save_settings_only

    contexts = load_contexts(env.config_path)
    config = contexts.named(name) if contexts is not None else None
    if contexts is None or config is None:
        raise UsageError(f"guardctl holds no context {name!r}: see `guardctl creds list`")
    forget_secrets(env, config, backend)
    rest = contexts.without(name)
    if rest is None:
        save_settings_only(env.config_path, contexts)
        return None
    save_config(env.config_path, rest)
    return rest.default


def forget_secrets(env: Environment, config: Config,
                   backend: KeyringBackend | None = None) -> None:
    """Delete `config`'s credential and cached tokens from the OS and kernel keyrings."""
    vault = _vault(config, backend)
    tokens = vault.tokens()
    tokens.delete(token_entry(config))
    if tokens is not vault:
        vault.delete(token_entry(config))
    vault.delete(credential_entry(config))
    fast = kernel_cache(env, config)
    if fast is not None:
        fast.drop()
