"""The encodings a secret hides in, read for the masker: base64 (also wrapped over lines),
hex, gzip inside either (Helm releases), JSON written inside a JSON string, and terminal
colour codes between its characters. Pure functions over text; `mask._Scanner` uses them.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import re
import zlib
from collections.abc import Callable

Span = tuple[int, int, str]

# base64 wrapped over lines: full lines, then a last line that may be short but padded
B64_RUN = re.compile(
    r"(?m)^[ \t]*[A-Za-z0-9+/]{20,}\r?\n"
    r"(?:[ \t]*[A-Za-z0-9+/]{16,}={0,2}\r?$\n?|[ \t]*[A-Za-z0-9+/]{1,15}={1,2}\r?$\n?)+"
)

B64_LINE = re.compile(r"[ \t]*[A-Za-z0-9+/]{20,}={0,2}\r?")

# a base64 token (see b64_tokens) in text made bytes, each base64 character an "a"
_B64_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_FLAT = bytes.maketrans(_B64_CHARS, b"a" * len(_B64_CHARS))
_FLAT_TOKEN = re.compile(b"a" * 16 + rb"a*={0,2}")

# a JSON string that holds escaped quotes (JSON inside it): its body
ESCAPED_STRING = re.compile(r'"((?:[^"\\\n]|\\.){0,1048576}?\\"(?:[^"\\\n]|\\.){0,1048576}?)"')
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", '"': '"', "\\": "\\", "/": "/"}

_HEX4 = re.compile(r"[0-9a-fA-F]{4}")
HEX = re.compile(r"[0-9a-fA-F]+")

# hex of an even length that is not all printable text (a byte outside tab, LF, CR, space..~)
HEX_BINARY = re.compile(
    r"(?:[0-9a-fA-F]{2})*?(?:0[0-8bcefBCEF]|[189a-fA-F][0-9a-fA-F]|7[fF])(?:[0-9a-fA-F]{2})*"
)

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


def b64_tokens(text: str) -> list[tuple[int, int]]:
    """The base64 tokens of `text`: what `[A-Za-z0-9+/]{16,}={0,2}` finds, found faster.

    `re` would try that regex at each of the many letters of a text in turn. In the text as
    bytes with every base64 character an "a" (and a character latin-1 lacks a "?", so that
    offsets hold), a token is a run of 16 "a" or more: `re` finds that literal start by a
    substring search. Greedy, so each token is a whole run of base64 characters.
    """
    flat = text.encode("latin-1", "replace").translate(_B64_FLAT)
    return [found.span() for found in _FLAT_TOKEN.finditer(flat)]


def b64_runs(text: str, tokens: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The spans `B64_RUN.finditer(text)` finds, given the text's base64 tokens.

    A run starts at a line that holds one token of 20 or more characters, so only the
    lines of long tokens are tried, in order, past the end of the run before.
    """
    runs: list[tuple[int, int]] = []
    tried = -1
    for start, end in tokens:
        line_start = text.rfind("\n", 0, start) + 1
        if end - start < 20 or line_start <= tried or (runs and line_start < runs[-1][1]):
            continue
        tried = line_start
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
