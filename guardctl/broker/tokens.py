"""The bearer tokens that name the agents a broker serves over TCP (`broker token …`).

A token is `gctl_` and 43 random letters and digits (256 bits); the prefix lets the masker
find one wherever it is printed (rules/secrets.yaml, `guardctl-broker-token`). It is shown
once, when it is made; the broker keeps only its sha256, with the agent's name and the
expiry, in `$GUARDCTL_HOME/broker/tokens.json` (0600, in a 0700 folder, replaced whole).
A presented token is hashed and compared with every stored hash by `hmac.compare_digest`
(no early exit, no timing difference between a near and a far miss); a match names the
agent, unless it expired. One token per agent: a new `create` for a name replaces its token.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import string
import time
from pathlib import Path
from typing import NamedTuple

from guardctl.atomic import write_atomic
from guardctl.errors import UsageError

PREFIX = "gctl_"
TOKEN = re.compile(r"gctl_[A-Za-z0-9]{43}")
# what a name may hold: it goes into audit records and the broker's log as it is
AGENT_NAME = re.compile(r"[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?")
_ALPHABET = string.ascii_letters + string.digits
_DURATION = re.compile(r"(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?")
_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
FORMAT = 1


class Entry(NamedTuple):
    agent: str
    sha256: str
    created: float
    expires: float


class Refused(Exception):
    """A presented token names no agent; the message says why, without the token."""


def store_path(state_dir: Path) -> Path:
    return state_dir / "broker" / "tokens.json"


def duration_seconds(text: str) -> int:
    """Seconds in `24h`, `7d`, `90m`, `1h30m`; UsageError when malformed or zero."""
    match = _DURATION.fullmatch(text)
    seconds = sum(int(match[u] or 0) * size for u, size in _UNITS) if match and text else 0
    if seconds <= 0:
        raise UsageError(f"--ttl {text!r} is not a duration such as 24h, 7d or 90m")
    return seconds


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def load(path: Path) -> list[Entry]:
    """The stored tokens; none when the file does not exist. UsageError when unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [Entry(str(e["agent"]), str(e["sha256"]), float(e["created"]),
                      float(e["expires"])) for e in data["tokens"]]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UsageError(f"cannot read the broker's tokens {path}: {err}; revoke and create "
                         "them again after moving the file away") from None


def _save(path: Path, entries: list[Entry]) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    tokens = [entry._asdict() for entry in entries]
    write_atomic(path, json.dumps({"v": FORMAT, "tokens": tokens}, indent=1) + "\n")


def create(path: Path, agent: str, ttl_seconds: int, now: float | None = None) -> str:
    """A new token for `agent` (replacing its old one); only its hash is stored."""
    if not AGENT_NAME.fullmatch(agent):
        raise UsageError(f"--agent {agent!r}: use lower-case letters, digits, '.', '_' and '-' "
                         "(at most 63, starting and ending with a letter or digit)")
    now = time.time() if now is None else now
    token = PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(43))
    kept = [entry for entry in load(path) if entry.agent != agent]
    _save(path, [*kept, Entry(agent, digest(token), now, now + ttl_seconds)])
    return token


def revoke(path: Path, agent: str) -> bool:
    """Forget `agent`'s token; False when it had none."""
    entries = load(path)
    kept = [entry for entry in entries if entry.agent != agent]
    if len(kept) == len(entries):
        return False
    _save(path, kept)
    return True


def verify(path: Path, token: str, now: float | None = None) -> str:
    """The agent `token` belongs to; Refused when it is missing, unknown or expired."""
    if not token:
        raise Refused("no token")
    entries = load(path)
    presented = digest(token)
    found: Entry | None = None
    for entry in entries:  # every entry is compared: the time taken says nothing
        if hmac.compare_digest(presented, entry.sha256):
            found = entry
    if found is None:
        raise Refused("unknown or revoked token")
    if (time.time() if now is None else now) >= found.expires:
        raise Refused(f"the token of agent {found.agent} expired at {_iso(found.expires)}")
    return found.agent


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def describe(entry: Entry, now: float | None = None) -> str:
    """One line of `broker token list`: the agent, when it was made, when it expires."""
    now = time.time() if now is None else now
    state = "expired" if now >= entry.expires else "valid"
    return f"{entry.agent}\t{state}\tcreated {_iso(entry.created)}\texpires {_iso(entry.expires)}"
