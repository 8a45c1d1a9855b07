"""How much recording guardctl keeps: the config's `retention` and `cast-max-size`.

```yaml
retention:            # what `guardctl sessions prune` removes (nothing is pruned unasked)
  max-age: 30d        # casts last written longer ago than this (s, m, h, d or w)
  max-size: 2GiB      # then the oldest casts, until all casts together fit
cast-max-size: 64MiB  # one invocation's part of a cast; past it the head and tail are kept
```

Sizes are bytes, or a number with B, KB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers
of 1024). Either retention key may be left out; `cast-max-size` defaults to 64 MiB, and 0
turns the cap off.
"""

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from guardctl.config import RECORDING_KEYS, load_recording
from guardctl.errors import UsageError

DEFAULT_CAST_MAX_SIZE = 64 * 1024**2
# a cap below this would leave no room for a head, a tail and the note between them
MIN_CAST_MAX_SIZE = 1024**2
_SIZE = re.compile(r"(\d+)\s*([KMGT]?i?B)?", re.IGNORECASE)
_UNITS = {
    "": 1, "b": 1,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
_AGE = re.compile(r"(\d+)([smhdw])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
RETENTION_KEYS = ("max-age", "max-size")


class Policy(NamedTuple):
    """What `sessions prune` removes: casts older than `max_age` seconds, then the oldest
    until the rest fit in `max_size` bytes (None: no such limit)."""

    max_age: float | None = None
    max_size: int | None = None

    @property
    def empty(self) -> bool:
        return self.max_age is None and self.max_size is None

    def given(self, max_age: str | None, max_size: str | None) -> "Policy":
        """This policy with the limits given on the command line in place of its own."""
        return Policy(
            parse_age(max_age, "--max-age") if max_age else self.max_age,
            parse_size(max_size, "--max-size") if max_size else self.max_size,
        )


class Settings(NamedTuple):
    retention: Policy = Policy()
    cast_max_size: int | None = DEFAULT_CAST_MAX_SIZE  # None: no cap


def parse_size(text: object, where: str) -> int:
    """Bytes in `2GiB`, `500MB`, `1024`; UsageError naming `where` when malformed."""
    match = _SIZE.fullmatch(str(text).strip()) if isinstance(text, (str, int)) else None
    unit = (match[2] or "").lower() if match else ""
    if match is None or isinstance(text, bool) or unit not in _UNITS:
        raise UsageError(f"{where}: {text!r} is not a size such as 64MiB, 2GiB or 500MB")
    return int(match[1]) * _UNITS[unit]


def parse_age(text: object, where: str) -> float:
    """Seconds in `30d`, `12h`, `2w`; UsageError naming `where` when malformed."""
    match = _AGE.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise UsageError(f"{where}: {text!r} is not an age such as 30d, 12h or 2w")
    return float(int(match[1]) * _SECONDS[match[2]])


def settings_of(raw: Mapping[str, Any], path: Path) -> Settings:
    """The checked settings from the config's raw `retention` and `cast-max-size`."""
    unknown = sorted(set(raw) - set(RECORDING_KEYS))
    if unknown:
        raise UsageError(f"{path}: unknown key {unknown[0]!r}")
    policy = Policy()
    if "retention" in raw:
        given = raw["retention"]
        if not isinstance(given, dict) or not set(given) <= set(RETENTION_KEYS):
            raise UsageError(f"{path}: 'retention' must be a mapping with max-age and/or "
                             "max-size, e.g. {max-age: 30d, max-size: 2GiB}")
        policy = Policy(
            parse_age(given["max-age"], f"{path}: retention.max-age")
            if "max-age" in given else None,
            parse_size(given["max-size"], f"{path}: retention.max-size")
            if "max-size" in given else None,
        )
    cap: int | None = DEFAULT_CAST_MAX_SIZE
    if "cast-max-size" in raw:
        cap = parse_size(raw["cast-max-size"], f"{path}: cast-max-size") or None
        if cap is not None and cap < MIN_CAST_MAX_SIZE:
            raise UsageError(f"{path}: cast-max-size must be at least 1MiB (or 0: no cap)")
    return Settings(policy, cap)


def load_settings(config: Path, cache_dir: Path | None = None) -> Settings:
    """The recording settings of the config file at `config` (defaults when it has none)."""
    return settings_of(load_recording(config, cache_dir), config)


def format_size(size: float) -> str:
    """`1.5 MiB`, `812 B`: for people, not for parsing back."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"
