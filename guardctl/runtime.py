"""Where guardctl's sockets are (the fork server's runtime folder, the broker's socket), the
signal relay both clients share, and the words that start this guardctl.

The runtime folder is `$XDG_RUNTIME_DIR/guardctl` (a per-login tmpfs folder on most
desktops), else `/tmp/guardctl-UID`; created 0700 and checked before any socket in it is
trusted. The broker is `GUARDCTL_BROKER`, else `broker:` in guardctl's config file. Read on
every command, so with `os`, `stat` and `sys` alone.
"""

import _signal
import os
import stat  # loaded by os already
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    import _socket
    from collections.abc import Mapping
    from typing import TypeVar

    _Relay = TypeVar("_Relay", bound="SignalRelay")


def socket_folder(environ: "Mapping[str, str]") -> str:
    runtime = environ.get("XDG_RUNTIME_DIR")
    return f"{runtime}/guardctl" if runtime else f"/tmp/guardctl-{os.getuid()}"


def private_folder(folder: str) -> bool:
    """True when `folder` is a real directory of this user that nobody else may enter."""
    try:
        info = os.lstat(folder)
    except OSError:
        return False
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == os.getuid()
        and stat.S_IMODE(info.st_mode) & 0o077 == 0
    )


BROKER_VARIABLE = "GUARDCTL_BROKER"


def launcher(prefer_script: bool = True) -> "list[str]":
    """The words that start this guardctl from a shell (the shim, `sh -c`, the hook's line).

    The `guardctl` console script next to this interpreter when there is one (and
    `prefer_script`), else this interpreter with `-m guardctl`. `-P` (Python 3.11+) keeps
    the working directory off `sys.path`, so a `guardctl/` folder wherever the agent
    happens to be cannot stand in for guardctl.
    """
    script = os.path.join(os.path.dirname(sys.executable), "guardctl")
    if prefer_script and os.path.isfile(script) and os.access(script, os.X_OK):
        return [script]
    safe_path = ["-P"] if sys.version_info >= (3, 11) else []
    return [sys.executable, *safe_path, "-m", "guardctl"]


def _config_path(environ: "Mapping[str, str]") -> str:
    explicit = environ.get("GUARDCTL_CONFIG")
    if explicit:
        return os.path.expanduser(explicit)
    base = environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "guardctl", "config.yaml")


def config_broker(path: str) -> "str | None":
    """`broker: PATH` at the top level of the config file at `path` (read without a YAML
    parser: one plain or quoted scalar on its line)."""
    try:
        # never blocking: a FIFO named as the config reads as empty, it does not hang the run
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with open(fd, encoding="utf-8") as handle:
            lines = handle.read(1 << 20).splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    for line in lines:
        if not line.startswith("broker:"):
            continue
        value = line[len("broker:") :].strip()
        if value[:1] in ("'", '"'):
            value = value[1 : value.find(value[0], 1)] if value.find(value[0], 1) > 0 else ""
        else:
            value = value.split(" #", 1)[0].strip()
        return value or None
    return None


def broker_path(environ: "Mapping[str, str]") -> "str | None":
    """The broker's socket this guardctl must use, or None (same-user mode)."""
    return environ.get(BROKER_VARIABLE) or config_broker(_config_path(environ))


class SignalRelay:
    """A client's connection to a server's worker: while the block runs, the signals the
    client gets go to `forward` (the worker handles them as its own); after it, the
    previous handlers are back and the socket is closed. A signal that was ignored stays
    ignored."""

    signals: "tuple[int, ...]" = ()

    def __init__(self, sock: "_socket.socket") -> None:
        self.sock = sock
        self.previous: dict[int, object] = {}

    def forward(self, signum: int, _frame: object) -> None:
        raise NotImplementedError

    def __enter__(self: "_Relay") -> "_Relay":
        for signum in self.signals:
            if _signal.getsignal(signum) != _signal.SIG_IGN:
                self.previous[signum] = _signal.signal(signum, self.forward)
        return self

    def __exit__(self, *_exc: object) -> None:
        for signum, handler in self.previous.items():
            _signal.signal(signum, handler)
        self.sock.close()
