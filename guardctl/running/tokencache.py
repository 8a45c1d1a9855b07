"""Minted agent tokens, and a fast cache for them in the Linux kernel's user keyring.

Every guardctl run needs the agent's short-lived ServiceAccount token. The OS keyring holds
it (beside the long-lived credential it was minted with; in a file of its own for a
file-backed keyring, see `creds.Vault.tokens`), but reaching the OS keyring means
importing the `keyring` package, which alone costs more than a kubectl call. So a token is
also kept in the kernel's user keyring (keyutils: `add_key`, `keyctl_search`, `keyctl_read`,
`keyctl_set_timeout`, through ctypes on `libkeyutils.so.1`), with a kernel timeout that ends
the moment the token stops being reusable (less than REFRESH_FRACTION of its life left). A
run that finds it there never imports `keyring` nor touches the long-lived credential.

Exposure: a `user` key is held in kernel memory only, never written to disk (nor to swap),
and gone at its timeout at the latest. It is readable only by processes of the same uid
that possess the user keyring (it is linked from their session keyring, as in a normal
login): the same processes that can ask an unlocked OS keyring for the token. The stored
long-lived credential is never put there: beside the token an entry holds only SHA-256
digests of its secret strings (`mask.literal_digests`), by which the masker still hides
them in kubectl's output without knowing them.

A key's description names one configuration: a hash of the config file's path and every
setting in it (server, context, ServiceAccount, keyring service, ...), so two configs or test
homes never share a token, and a changed config does not find the old one.

Where the kernel keyring cannot be used (not Linux, libkeyutils missing, keyctl blocked by
seccomp as in Docker's default profile, quota full) every call here is a miss or a no-op, and
guardctl falls back to the token cached in the OS keyring: correct, only slower.
"""

import ctypes
import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import NamedTuple

# a cached token is reused while at least this share of its life is left
REFRESH_FRACTION = 0.2
LIBRARY = "libkeyutils.so.1"
KEY_SPEC_USER_KEYRING = -4
KEY_TYPE = b"user"
DESCRIPTION_PREFIX = "guardctl:token:"
# the kernel's limit for a `user` key's payload (a token is ~1-2 KB)
MAX_PAYLOAD = 32767


class Token(NamedTuple):
    """A minted ServiceAccount token; times are seconds since the epoch on guardctl's clock.

    `mask_digests` are digests of the stored credential's secret strings (never the strings):
    the masker hides the token, and whatever has one of those digests, in everything
    kubectl prints.
    """

    value: str
    expires_at: float
    issued_at: float
    mask_digests: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"Token(expires_at={self.expires_at!r}, issued_at={self.issued_at!r})"

    def fresh(self, now: float) -> bool:
        """At least REFRESH_FRACTION of the token's life is left (and the clock did not go back)."""
        return self.reusable_for(now) >= 0

    def reusable_for(self, now: float) -> float:
        """Seconds until the token must be renewed (negative: renew now)."""
        life = self.expires_at - self.issued_at
        if life <= 0 or now < self.issued_at:
            return -1.0
        return self.expires_at - REFRESH_FRACTION * life - now


# --------------------------------------------------------------------------- payload


def encode(token: Token, server: str, service_account: str) -> str:
    """The cached form of a token: JSON naming the server and ServiceAccount it is for."""
    return json.dumps({
        "token": token.value, "expires_at": token.expires_at, "issued_at": token.issued_at,
        "mask_digests": list(token.mask_digests), "server": server,
        "service_account": service_account,
    })


def decode(raw: str | bytes | None, server: str, service_account: str) -> Token | None:
    """The token in a cached payload, if it is readable and was minted for this server and
    ServiceAccount; None otherwise."""
    try:
        data = json.loads(raw) if raw else None
        if (not isinstance(data, dict) or data.get("server") != server
                or data.get("service_account") != service_account):
            return None
        digests = data["mask_digests"]  # an entry without them would leave secrets unmasked
        if not isinstance(digests, list):
            return None
        return Token(str(data["token"]), float(data["expires_at"]), float(data["issued_at"]),
                     tuple(str(d) for d in digests))
    except (ValueError, KeyError, TypeError):
        return None


def description(config_path: Path, settings: Sequence[str]) -> str:
    """The kernel key description for one configuration: its file's absolute path and all of
    its settings, hashed (descriptions are visible to the uid in /proc/keys)."""
    identity = json.dumps([os.path.abspath(config_path), *settings])
    return DESCRIPTION_PREFIX + hashlib.sha256(identity.encode("utf-8")).hexdigest()[:32]


# --------------------------------------------------------------------------- the kernel keyring


class KernelKeyring:
    """`user` keys in the calling uid's kernel user keyring. Errors are misses or OSError."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        serial = ctypes.c_int32
        self._add = _function(lib, "add_key", serial,
                              ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p,
                              ctypes.c_size_t, serial)
        self._search = _function(lib, "keyctl_search", ctypes.c_long,
                                 serial, ctypes.c_char_p, ctypes.c_char_p, serial)
        self._read = _function(lib, "keyctl_read", ctypes.c_long,
                               serial, ctypes.c_char_p, ctypes.c_size_t)
        self._timeout = _function(lib, "keyctl_set_timeout", ctypes.c_long,
                                  serial, ctypes.c_uint)
        self._invalidate = _function(lib, "keyctl_invalidate", ctypes.c_long, serial)

    def get(self, name: str) -> bytes | None:
        """The payload of the live key `name`; None when absent, expired or unreadable."""
        serial = self._search(KEY_SPEC_USER_KEYRING, KEY_TYPE, name.encode(), 0)
        if serial < 0:
            return None
        buffer = ctypes.create_string_buffer(MAX_PAYLOAD)
        size = self._read(serial, buffer, MAX_PAYLOAD)
        if size < 0 or size > MAX_PAYLOAD:
            return None
        return buffer.raw[:size]

    def put(self, name: str, payload: bytes, timeout: int) -> None:
        """Store `payload` as key `name` (replacing one of that name), gone after `timeout`
        seconds; raises OSError when the kernel refuses."""
        if timeout < 1:  # a timeout of 0 would mean "never expires"
            raise ValueError("a kernel key needs a timeout of at least one second")
        serial = self._add(KEY_TYPE, name.encode(), payload, len(payload), KEY_SPEC_USER_KEYRING)
        if serial < 0:
            raise _os_error()
        if self._timeout(serial, timeout) < 0:
            error = _os_error()
            # an update resets a key's timeout: never leave one without
            self._invalidate(serial)
            raise error

    def drop(self, name: str) -> None:
        """Remove key `name` at once, if there is one."""
        serial = self._search(KEY_SPEC_USER_KEYRING, KEY_TYPE, name.encode(), 0)
        if serial >= 0:
            self._invalidate(serial)


def _function(lib: ctypes.CDLL, name: str, restype: type, *argtypes: type) -> Callable[..., int]:
    function = getattr(lib, name)
    function.restype = restype
    function.argtypes = list(argtypes)
    typed: Callable[..., int] = function
    return typed


def _os_error() -> OSError:
    code = ctypes.get_errno()
    return OSError(code, os.strerror(code))


@cache
def kernel_keyring() -> KernelKeyring | None:
    """The kernel keyring through libkeyutils, or None where the library cannot be loaded.

    Loaded by its exact file name: `ctypes.util.find_library` would start processes.
    """
    try:
        return KernelKeyring(ctypes.CDLL(LIBRARY, use_errno=True))
    except (OSError, AttributeError):
        return None


# --------------------------------------------------------------------------- tokens


class KernelCache:
    """One configuration's token in the kernel keyring. Never raises: a failure is a miss."""

    def __init__(self, keyring: KernelKeyring, name: str, server: str,
                 service_account: str) -> None:
        self._keyring = keyring
        self.name = name
        self._server = server
        self._service_account = service_account

    def load(self) -> Token | None:
        return decode(self._keyring.get(self.name), self._server, self._service_account)

    def save(self, token: Token, now: float) -> bool:
        """Keep `token` until it stops being reusable; False when the kernel refused it (or
        it is not reusable now)."""
        timeout = math.floor(token.reusable_for(now))
        if timeout < 1:
            return False
        payload = encode(token, self._server, self._service_account).encode("utf-8")
        if len(payload) > MAX_PAYLOAD:
            return False
        try:
            self._keyring.put(self.name, payload, timeout)
        except OSError:
            return False
        return True

    def drop(self) -> None:
        self._keyring.drop(self.name)
