"""Many keywords found in one pass by Hyperscan, when it is installed (the `fast` extra).

Optional: without it, or for a text that is not ASCII, `mask._Keywords` finds keywords with
`re` and substring searches, the reference this must agree with (tests/test_mask.py compares
the two). Hyperscan reads a text once for all keywords at gigabytes per second; `re` stops at
each character some keyword could start with.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any


def _hyperscan() -> Any:
    """The hyperscan module, or None when it is not installed (the pure-re path serves)."""
    try:
        import hyperscan
    except ImportError:
        return None
    return hyperscan


class LiteralScan:
    """Finds every occurrence of some words (lower-case ASCII) in ASCII text, in any case."""

    def __init__(self, hyperscan: Any, database: Any) -> None:
        self._hyperscan = hyperscan
        self._database = database
        self._local = threading.local()  # scratch space: one per thread that scans

    def ends(self, text: str) -> list[tuple[int, int]]:
        """(index of the word, offset just past it) for each occurrence in `text`, which
        must be ASCII (offsets in its bytes are offsets in it); overlapping ones too."""
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = self._hyperscan.Scratch(self._database)
        found: list[tuple[int, int]] = []
        add = found.append

        def hit(word: int, _start: int, end: int, _flags: int, _context: object) -> None:
            add((word, end))

        self._database.scan(text.encode("ascii"), match_event_handler=hit, scratch=scratch)
        return found


def literal_scan(words: Sequence[str]) -> LiteralScan | None:
    """A scanner for `words`, or None when Hyperscan is missing or cannot take them."""
    hyperscan = _hyperscan()
    if hyperscan is None or not words or not all(w and w.isascii() for w in words):
        return None
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    try:
        database.compile(
            expressions=[w.encode("ascii") for w in words],
            ids=list(range(len(words))),
            flags=hyperscan.HS_FLAG_CASELESS,
            literal=True,
        )
    except hyperscan.error:
        return None
    return LiteralScan(hyperscan, database)
