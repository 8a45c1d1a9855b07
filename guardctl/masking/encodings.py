"""The encodings a secret hides in, read for the masker: base64 (also wrapped over lines),
hex, gzip inside either (Helm releases), JSON written inside a JSON string, and terminal
colour codes between its characters. Pure functions over text; `mask._Scanner` uses them.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import itertools
import operator
import re
import zlib
from collections.abc import Callable, Iterable
from itertools import compress, filterfalse, repeat
from typing import NamedTuple

Span = tuple[int, int, str]

# base64 wrapped over lines: full lines, then a last line that may be short but padded
B64_RUN = re.compile(
    r"(?m)^[ \t]*[A-Za-z0-9+/]{20,}\r?\n"
    r"(?:[ \t]*[A-Za-z0-9+/]{16,}={0,2}\r?$\n?|[ \t]*[A-Za-z0-9+/]{1,15}={1,2}\r?$\n?)+"
)

B64_LINE = re.compile(r"[ \t]*[A-Za-z0-9+/]{20,}={0,2}\r?")

# a base64 token (see b64_candidates) in text made bytes, each base64 character an "a"
_B64_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_FLAT = bytes.maketrans(_B64_CHARS, b"a" * len(_B64_CHARS))
_FLAT_TOKEN = re.compile(b"a" * 16 + rb"a*={0,2}")
# the line break before a line that is one long token (where a B64_RUN may start), and the
# first line of a text that is one
_FLAT_RUN_LINE = re.compile(rb"\n(?=[ \t]*a{20,}\r?\n)")
_FLAT_RUN_FIRST = re.compile(rb"[ \t]*a{20,}\r?\n")

# Hyperscan regexes (read over the text as latin-1 bytes, as the flat copy is) that end on the
# line of every token that is not hex of bytes (HEX_BINARY) and not a path: a superset of the
# tokens `_Scanner` decodes, so that the others (a log's request and trace ids) need not be
# found one by one; what they find ends on a token's line (the character after a token is
# on its line, or is its line break).
# A token: 16 or more base64 characters (B) between characters that are not (or the ends).
_B = "A-Za-z0-9+/"
_H = "0-9a-fA-F"
_BEFORE = rf"(?:\A|[^{_B}])"
_AFTER = rf"(?:[^{_B}]|\z)"
# the first 16 characters of a token, the first one not hex among them (not "/" if first)
_NOT_HEX_IN_16 = "|".join(
    (f"[{_H}]{{{k}}}" if k else "")
    + ("[G-Zg-z+]" if k == 0 else "[G-Zg-z+/]")
    + (f"[{_B}]{{{15 - k}}}" if k < 15 else "")
    for k in range(16)
)
# PATH_LIKE's `[\w.-]` as far as ASCII goes: narrower than `\w`, so its `not a path` is wider
_W = "A-Za-z0-9_.-"
TOKEN_LINES = (
    # not all hex, not starting with "/": the first character that is not hex is among its
    # first 16, or after them (each pattern ends once in a token: fixed lengths, or at the
    # first such character; Hyperscan reads these several times faster than one pattern
    # that finds the character anywhere)
    rf"{_BEFORE}(?:{_NOT_HEX_IN_16})",
    rf"{_BEFORE}[{_H}]{{16}}[{_H}]*[G-Zg-z+/]",
    # "/" where PATH_LIKE (`/W+/W+/`) may not match: a token that may be no path
    rf"{_BEFORE}/(?:[^{_W}]|\z|[{_W}]+(?:[^{_W}/]|\z)|[{_W}]+/(?:[^{_W}]|\z)"
    rf"|[{_W}]+/[{_W}]+(?:[^{_W}/]|\z))",
    # hex, then base64's padding (not hex then)
    rf"[{_H}]{{16}}=",
    # hex of an odd length (read as base64), or of text only (tab, line breaks, space..~)
    rf"{_BEFORE}[{_H}]{{17}}(?:[{_H}]{{2}})*{_AFTER}",
    rf"{_BEFORE}(?:[2-7][{_H}]|0[9aAdD]){{8,}}{_AFTER}",
)
# (Hyperscan, at every line's start) a line that is one token of 20 or more characters,
# where a B64_RUN may start: what _run_lines finds
RUN_LINE = rf"^[ \t]*[{_B}]{{20}}[{_B}]*\r?\n"
# a token that starts with 16 hex digits: where none is, no token is hex of bytes
HEX_START = rf"{_BEFORE}[{_H}]{{16}}"

# a JSON string that holds escaped quotes (JSON inside it): its body
ESCAPED_STRING = re.compile(r'"((?:[^"\\\n]|\\.){0,1048576}?\\"(?:[^"\\\n]|\\.){0,1048576}?)"')
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", '"': '"', "\\": "\\", "/": "/"}

_HEX4 = re.compile(r"[0-9a-fA-F]{4}")
HEX = re.compile(r"[0-9a-fA-F]+")

# hex of an even length that is not all printable text (a byte outside tab, LF, CR, space..~)
HEX_BINARY = re.compile(
    r"(?:[0-9a-fA-F]{2})*?(?:0[0-8bcefBCEF]|[189a-fA-F][0-9a-fA-F]|7[fF])(?:[0-9a-fA-F]{2})*"
)

# what HEX_BINARY.fullmatch takes is told by C loops over all tokens at once (see
# _hex_of_bytes): in a second bytes copy of the text a hex digit is an "h", any other base64
# character or "=" an "a", so that a token with no "a" is all hex; its bytes then hold one
# that is not text (HEX_BINARY's pairs) when deleting the _TEXT_BYTES leaves any
_HEX_DIGITS = b"0123456789abcdefABCDEF"
_NOT_HEX = bytes(c for c in _B64_CHARS + b"=" if c not in _HEX_DIGITS)
_HEX_FLAT = bytes.maketrans(_HEX_DIGITS + _NOT_HEX, b"h" * len(_HEX_DIGITS) + b"a" * len(_NOT_HEX))
_TEXT_BYTES = b"\t\n\r" + bytes(range(0x20, 0x7F))
_NOT_TEXT = operator.methodcaller("translate", None, _TEXT_BYTES)

# an absolute path (`/var/secrets/google/key.json`), whose letters read as base64 too
PATH_LIKE = re.compile(r"/[\w.-]+/[\w.-]+/")
GZIP_MAGIC = b"\x1f\x8b"

# gzip inside base64 is read up to this size (a Helm release holds a chart and its values)
MAX_GUNZIPPED = 8 * 1024 * 1024

# a terminal escape: CSI (colours, cursor) or OSC (titles, links)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")


def b64decode(blob: str) -> bytes | None:
    """The bytes of a base64 blob (blanks and line breaks in it skipped), or None."""
    compact = "".join(blob.split())
    if len(compact) % 4 == 1:
        return None
    try:
        return base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


class Base64Candidates(NamedTuple):
    """What `_Scanner` may decode in a text, as (start, end) spans in text order."""

    runs: list[tuple[int, int]]  # what B64_RUN.finditer finds
    # what `[A-Za-z0-9+/]{16,}={0,2}` finds (base64 tokens), but those in hex_binary
    tokens: list[tuple[int, int]]
    hex_binary: list[tuple[int, int]]  # the tokens HEX_BINARY fully matches


def b64_candidates(text: str) -> Base64Candidates:
    """The base64 runs and tokens of `text`, the tokens that are hex of bytes apart.

    `re` would try the token regex at each of the many letters of a text in turn. In the
    text as bytes with every base64 character an "a" (and a character latin-1 lacks a "?",
    so that offsets hold), a token is a run of 16 "a" or more: `re` finds that literal start
    by a substring search. Greedy, so each token is a whole run of base64 characters.

    A log has a hex id or two on every line, each of which `_Scanner` would look at on its
    own only to drop it: the tokens HEX_BINARY takes whole (hex of bytes that are not all
    text) are set apart (see _hex_of_bytes).
    """
    raw = text.encode("latin-1", "replace")
    flat = raw.translate(_FLAT)
    return _candidates(text, raw, _b64_runs(text, flat, _run_lines(flat)), [flat], (0,), None)


def b64_candidates_in(
    text: str, starts: list[int], ends: list[int], run_lines: list[int]
) -> Base64Candidates:
    """`b64_candidates(text)`, its tokens only those in text[start:end] for each of `starts`
    and `ends` (whole lines, sorted): where `TOKEN_LINES` found one that counts. `run_lines`:
    where the lines start that `RUN_LINE` found."""
    raw = text.encode("latin-1", "replace")
    flat = raw.translate(_FLAT)
    return _candidates(text, raw, _b64_runs(text, flat, run_lines), repeat(flat), starts, ends)


def _candidates(
    text: str,
    raw: bytes,
    runs: list[tuple[int, int]],
    flats: Iterable[bytes],
    starts: Iterable[int],
    ends: Iterable[int] | None,
) -> Base64Candidates:
    """The tokens of the flat copies in `flats` from `starts` to `ends` (None: to the end)."""
    found = map(_FLAT_TOKEN.finditer, flats, starts, *([] if ends is None else [ends]))
    every = list(map(re.Match.span, itertools.chain.from_iterable(found)))
    if not every:
        return Base64Candidates(runs, [], [])
    binary = _hex_of_bytes(text, raw, every)
    if not binary:
        return Base64Candidates(runs, every, [])
    return Base64Candidates(runs, list(filterfalse(set(binary).__contains__, every)), binary)


def _hex_of_bytes(text: str, raw: bytes, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The spans of `text` (`raw` is it as latin-1 bytes) that HEX_BINARY fully matches: hex
    of an even length whose bytes are not all text. Loops in C (map, compress) over all
    spans at once, linear in their length: one regex match per span cost a log more than
    finding them (a log line holds a request id and a trace id)."""
    starts, ends = zip(*spans, strict=True)
    hexed = raw.translate(_HEX_FLAT)
    all_hex = map(operator.lt, map(hexed.find, repeat(b"a"), starts, ends), repeat(0))
    even = map(operator.not_, map(operator.and_, map(operator.sub, ends, starts), repeat(1)))
    pairs = list(compress(spans, map(operator.and_, all_hex, even)))
    if not pairs:
        return []
    blobs = map(text.__getitem__, itertools.starmap(slice, pairs))
    return list(compress(pairs, map(_NOT_TEXT, map(bytes.fromhex, blobs))))


def _run_lines(flat: bytes) -> list[int]:
    """Where the lines start that are one token of 20 or more characters (a B64_RUN may
    start there), given the text as bytes, base64 as "a"."""
    starts = [found.end() for found in _FLAT_RUN_LINE.finditer(flat)]
    if _FLAT_RUN_FIRST.match(flat):
        starts.insert(0, 0)
    return starts


def _b64_runs(text: str, flat: bytes, starts: list[int]) -> list[tuple[int, int]]:
    """The spans `B64_RUN.finditer(text)` finds, given where its lines start that are one
    token of 20 or more characters (see _run_lines): only those are tried, in order, past
    the end of the run before."""
    runs: list[tuple[int, int]] = []
    for line_start in starts:
        if runs and line_start < runs[-1][1]:
            continue
        run = B64_RUN.match(text, line_start)
        if run is not None:
            runs.append(run.span())
    return runs


def unescape(body: str) -> tuple[str, list[int]]:
    """A JSON string's body unescaped, and for each character of it (and its end) where it
    starts in `body`. An escape it does not know stays as it is."""
    out: list[str] = []
    where: list[int] = []
    pos, size = 0, len(body)
    while pos < size:
        char = body[pos]
        where.append(pos)
        if char != "\\" or pos + 1 >= size:
            out.append(char)
            pos += 1
            continue
        code = body[pos + 1]
        if code == "u" and _HEX4.fullmatch(body, pos + 2, pos + 6):
            out.append(chr(int(body[pos + 2 : pos + 6], 16)))
            pos += 6
        else:
            out.append(_ESCAPES.get(code, code))
            pos += 2
    where.append(size)
    return "".join(out), where


def ansi_spans(text: str, spans: Callable[[str], list[Span]]) -> list[Span]:
    """`spans` of `text` read without its terminal escapes (colour), as spans of `text`:
    a secret split by colour codes is still one secret."""
    kept: list[str] = []
    starts: list[int] = []  # where each kept piece starts in `text`
    offsets: list[int] = []  # ... and in the text without escapes
    pos = plain = 0
    for escape in _ANSI.finditer(text):
        if escape.start() > pos:
            starts.append(pos)
            offsets.append(plain)
            kept.append(text[pos : escape.start()])
            plain += escape.start() - pos
        pos = escape.end()
    if pos < len(text):
        starts.append(pos)
        offsets.append(plain)
        kept.append(text[pos:])

    def where(index: int) -> int:
        piece = bisect.bisect_right(offsets, index) - 1
        return starts[piece] + index - offsets[piece]

    return [(where(s), where(e - 1) + 1, name) for s, e, name in spans("".join(kept)) if e > s]


def gunzip(raw: bytes) -> bytes | None:
    """gzip-compressed bytes (a Helm release) decompressed, up to MAX_GUNZIPPED bytes."""
    try:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        return inflater.decompress(raw, MAX_GUNZIPPED)
    except zlib.error:
        return None
