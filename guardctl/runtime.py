"""guardctl's runtime folder: where its per-user sockets live.

`$XDG_RUNTIME_DIR/guardctl` (a per-login tmpfs folder on most desktops), else
`/tmp/guardctl-UID`; created 0700 and checked before any socket in it is trusted. Read on
every command by the fork client, so with `os` and `stat` alone.
"""

import os
import stat  # loaded by os already

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Mapping


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
