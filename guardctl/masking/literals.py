"""Many keywords found in one pass by Hyperscan, when it is installed (the `fast` extra).

Optional: without it, or for a text `scannable` turns away, `mask._Keywords` finds keywords with
`re` and substring searches, the reference this must agree with (tests/test_mask.py compares
the two). Hyperscan reads a text once for all keywords at gigabytes per second; `re` stops at
each character some keyword could start with.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

# the only characters that lower() turns into ASCII letters (İ into two characters); looked
# for by `in`, which answers at once for a text of latin-1 only (a placeholder's «»), where a
# regex reads it all
_LOWERS_TO_ASCII = ("\u0130", "\u212a")


def _hyperscan() -> Any:
    """The hyperscan module, or None when it is not installed (the pure-re path serves)."""
    try:
        import hyperscan
    except ImportError:
        return None
    return hyperscan


def scannable(text: str) -> bool:
    """Whether `LiteralScan.ends` finds in `text` the words a search of `text.lower()` finds.

    It reads the text as latin-1 bytes, a character beyond as "?" (so that offsets hold, and
    no word holds a "?"), and matches ASCII letters in any case: the same unless the text
    holds a character that lower() makes an ASCII letter."""
    return text.isascii() or not any(char in text for char in _LOWERS_TO_ASCII)


class LiteralScan:
    """Finds every occurrence of some words (lower-case ASCII, no "?") in a text, in any case."""

    def __init__(self, hyperscan: Any, database: Any) -> None:
        self._hyperscan = hyperscan
        self._database = database
        self._local = threading.local()  # scratch space: one per thread that scans

    def ends(self, text: str) -> list[tuple[int, int]]:
        """(index of the word, offset just past it) for each occurrence in `text` (see
        `scannable`), overlapping ones too."""
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = self._hyperscan.Scratch(self._database)
        found: list[tuple[int, int]] = []
        add = found.append

        def hit(word: int, _start: int, end: int, _flags: int, _context: object) -> None:
            add((word, end))

        data = text.encode("latin-1", "replace")
        self._database.scan(data, match_event_handler=hit, scratch=scratch)
        return found


def literal_scan(words: Sequence[str]) -> LiteralScan | None:
    """A scanner for `words`, or None when Hyperscan is missing or cannot take them."""
    if not all(w and w.isascii() and "?" not in w for w in words):
        return None
    return _compiled(words, ["HS_FLAG_CASELESS"] * len(words), literal=True)


def pattern_scan(patterns: Sequence[str], once: Sequence[str] = ()) -> LiteralScan | None:
    """A scanner for regexes in Hyperscan's dialect (ASCII; `^` and `$` at every line's start
    and end), numbered from 0, then for `once` ones (each found once at most, where it is
    first found), numbered on; None when Hyperscan is missing or cannot take them. It reads
    the text as `LiteralScan.ends` does: a character beyond latin-1 is a "?"."""
    if not all(p.isascii() for p in (*patterns, *once)):
        return None
    flags = ["HS_FLAG_MULTILINE"] * len(patterns) + ["HS_FLAG_SINGLEMATCH"] * len(once)
    return _compiled([*patterns, *once], flags, literal=False)


def _compiled(
    expressions: Sequence[str], flags: Sequence[str], literal: bool
) -> LiteralScan | None:
    hyperscan = _hyperscan()
    if hyperscan is None or not expressions:
        return None
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    try:
        database.compile(
            expressions=[e.encode("ascii") for e in expressions],
            ids=list(range(len(expressions))),
            flags=[getattr(hyperscan, flag) for flag in flags],
            literal=literal,
        )
    except hyperscan.error:
        return None
    return LiteralScan(hyperscan, database)
