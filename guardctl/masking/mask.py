"""Streaming secret masking: kubectl's output in, the same output with every secret hidden.

A secret is replaced by the placeholder ``«masked:NAME»``, NAME being the detector or rule
that fired (``github-pat``, ``secret-data``, ``literal``, ``pem-private-key+base64``, ...).
The placeholder keeps the shape of the text around it:

- it holds no quote, no ``: `` and no ``#``, so a masked YAML plain scalar or JSON string
  still parses; quotes around a masked value are kept;
- a multi-line secret (a PEM block) leaves its line breaks and indentation in place, so
  the line count and YAML block scalars survive;
- in a table, the gap of spaces after a masked cell is widened or narrowed so that the
  next column starts where it did (when the placeholder is not wider than cell + gap).

Three layers run over complete lines: the structure rules (`_Structure`: values under a
Secret's ``data``/``stringData``, kubeconfig credential keys, env values with
secret-looking names, ``kubectl describe secret``, the last-applied JSON), then the
detectors of rules/secrets.yaml with literal values and base64 decoding (`_Scanner`).

Speed (bench/bench_mask.py): each Python step costs far more than a C loop over the same
text, so the hot paths hand whole chunks to C: a run of lines that no structure rule reads
passes in one regex match (`_Structure._untouched`), or, with Hyperscan, the lines that a
rule may act on are found in one pass over the chunk and those between pass on as they are
(`_Structure._skip`); the one-line detectors only run on
the lines that hold one of their keywords, found by one regex over each keyword's rarest
character (`_Keywords`), or with Hyperscan in one pass, and a detector with a prefilter
only on the stretches where that ended (`_Prefilters`); base64 candidates and literal
values are found by substring searches (`encodings.b64_candidates`, `_literal_spans`), with
Hyperscan only on the lines where a token that counts may be (`_b64_found`). Each shortcut
finds exactly what the plain way would; tests/test_mask.py compares them, and the whole
masker with every Hyperscan shortcut against the pure-`re` reference, which serves where
Hyperscan has no wheel.

Memory stays bounded: the masker holds back the current partial line (up to LINE_CAP
characters, then it cuts, keeping a TAIL; a JSON document's line is instead read on as it
streams, by `jsonstream.JsonStream`), an unfinished multi-line block (a PEM block or a
wrapped base64 blob, up to BLOCK_CAP, then masks it) and an object's data section until its
``kind`` is known (up to BLOCK_CAP, then treats it as a Secret). Whatever cannot be read
whole is masked: this is a security tool, so doubt fails closed.
"""

from __future__ import annotations

import base64
import bisect
import codecs
import functools
import itertools
import json
import operator
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from itertools import compress, repeat
from typing import Any, NamedTuple

from guardctl.fieldpaths import custom_columns, names_only
from guardctl.masking.columns import Columns
from guardctl.masking.detectors import (
    Detector,
    StructureRules,
    default_detectors,
    default_rules,
    shannon_entropy,
)
from guardctl.masking.encodings import (
    B64_LINE,
    ESCAPED_STRING,
    GZIP_MAGIC,
    HEX,
    HEX_START,
    PATH_LIKE,
    RUN_LINE,
    TOKEN_LINES,
    ansi_spans,
    b64_candidates,
    b64_candidates_in,
    b64decode,
    gunzip,
    unescape,
)
from guardctl.masking.jsonstream import JsonStream
from guardctl.masking.literals import LiteralScan, literal_scan, pattern_scan, scannable

# kubectl caps all annotations of an object at 256 KiB, so a last-applied line fits
LINE_CAP = 512 * 1024
# an unfinished PEM block, wrapped base64 blob or undecided data section is held this long
BLOCK_CAP = 256 * 1024
# kept back when an overlong line is cut: longer than any bounded detector match
TAIL = 32 * 1024
# literals shorter than this would mask ordinary words
MIN_LITERAL = 6
# base64 inside base64 inside the text is decoded; deeper is not
BASE64_DEPTH = 2
# raw bytes decoded from base64 count as key material above this entropy (bits per byte)
BINARY_ENTROPY = 3.5

# see Masker
MODES = ("text", "structure", "whole", "columns")
# stretches of keyword lines above which a detector scans the whole text instead
_MAX_REGIONS = 512

# names of masks that come from structure, not from a detector of rules/secrets.yaml
SECRET_DATA = "secret-data"
CREDENTIAL = "credential"
SECRET_ENV = "secret-env"
LITERAL = "literal"
BINARY = "binary-secret"
COMMAND_OUTPUT = "command-output"
UNFINISHED_KEY = "unfinished-private-key"
OVERLONG_BASE64 = "overlong-base64"

# `kubectl get` outputs that print bare field values, which for a Secret are its secrets
_TEMPLATE_OUTPUTS = frozenset(
    {
        "jsonpath",
        "jsonpath-as-json",
        "jsonpath-file",
        "go-template",
        "go-template-file",
        "template",
        "templatefile",
        "custom-columns",
        "custom-columns-file",
    }
)
_SECRET_RESOURCES = frozenset({"secret", "secrets"})

# `KEY: ` or `"KEY"=` just before a value, read backwards from the value (a forward search
# would try every start in the line, at the cost of the square of its length)
# (an item of a JSON list counts too: `"keys": ["a", "b"]`, over the items before it)
_KEY_BEFORE_REVERSED = re.compile(
    r"[\"']?\s*(?:,\s*[\"'][^\"'\n]{0,512}[\"']\s*)*(?:\[\s*)?[:=]\s*[\"']?([A-Za-z0-9_./-]+)"
)
# how far before a value its key is looked for
_KEY_WINDOW = 256
# what a scanner keeps of the text before (see _Scanner.mask): a label and blank lines
_CONTEXT_LINES = 4
_CONTEXT_SIZE = 1024
# `- ` starting a YAML list item, and the `KEY:` line above a list's items
_LIST_ITEM = re.compile(r"[ \t]*- ")
_LIST_PARENT = re.compile(r"[ \t]*([A-Za-z0-9_.-]+):[ \t]*\r?")
# list items looked through for their key
_LIST_LOOKBACK = 64
# words of a secret's name (see structure.secret_name in rules/secrets.yaml), lower case
_SECRET_WORDS = ("pass", "pwd", "secret", "token", "key", "auth", "credential", "private")
# a line that is a YAML list item (after its line break)
_LIST_ITEM_LINE = re.compile(r"\n[ \t]*- ")
_TABLE_GAP = re.compile(r" {2,}(?=[^ \r\n])")
# characters a YAML mapping key does not start with (comments, flow collections, list items)
_NOT_A_KEY_START = frozenset("#{}[],- \t")
_JSON_KEY = re.compile(r"\"(?P<key>(?:[^\"\\]|\\.)*)\":\s*")
# one "key":"value" pair of a data object, quotes escaped to any level (\" inside a JSON string)
_JSON_PAIR = re.compile(r'(?P<q>\\*)"(?P<key>[^"\\]*)(?P=q)"\s*:\s*(?P=q)"[^"\\]*(?P=q)"')
_BLOCK_HEADER = re.compile(r"[|>][+-]?[1-9]?[+-]?")
_DESCRIBE_SIZE = re.compile(r"\d+ bytes")
# placeholders that tools print instead of a value: nothing to hide
_NOT_A_VALUE = frozenset({"", "null", "~", "REDACTED", "DATA+OMITTED", "<none>", "{}", "[]"})
_LONGEST_NOT_A_VALUE = max(map(len, _NOT_A_VALUE))

Span = tuple[int, int, str]


def placeholder(name: str) -> str:
    """The text that replaces a secret found by `name`."""
    return f"«masked:{name}»"


# --------------------------------------------------------------------------- splicing


def _line_breaks(secret: str) -> str:
    """The line breaks of a multi-line secret, each with the next line's indentation."""
    pieces = secret.split("\n")
    return "".join(
        ("\r\n" if before.endswith("\r") else "\n") + after[: len(after) - len(after.lstrip(" \t"))]
        for before, after in zip(pieces, pieces[1:], strict=False)
    )


def _splice(text: str, spans: Iterable[Span]) -> str:
    """`text` with each (start, end, name) span replaced by its placeholder.

    Spans are sorted and do not overlap. A gap of two or more spaces after a one-line span
    is resized so that the next table column keeps its position.
    """
    parts: list[str] = []
    pos = 0
    for start, end, name in spans:
        start = max(start, pos)
        if start >= end:
            continue
        parts.append(text[pos:start])
        secret = text[start:end]
        mark = placeholder(name)
        parts.append(mark + _line_breaks(secret))
        pos = end
        gap = _TABLE_GAP.match(text, end)
        if gap and "\n" not in secret:
            width = len(secret) + len(gap.group()) - len(mark)
            parts.append(" " * max(2, width))
            pos = gap.end()
    parts.append(text[pos:])
    return "".join(parts)


def _merge(spans: list[Span], rank: Mapping[str, int] | None = None) -> list[Span]:
    """Sorted spans with overlaps joined; the earliest, longest, best-ranked span's name wins."""
    ranks = rank or {}
    merged: list[Span] = []
    for start, end, name in sorted(spans, key=lambda s: (s[0], -s[1], ranks.get(s[2], 0))):
        if merged and start < merged[-1][1]:
            first = merged[-1]
            merged[-1] = (first[0], max(first[1], end), first[2])
        else:
            merged.append((start, end, name))
    return merged


# --------------------------------------------------------------------------- scanning


def _literal_variants(literal: str) -> set[str]:
    """A literal and the forms of it that appear inside base64 text.

    Base64 encodes 3 bytes as 4 characters, so a value inside a larger blob is encoded in
    one of three alignments; the characters that depend only on the value are the same
    wherever the blob starts (the trick CI log maskers use).
    """
    raw = literal.encode("utf-8")
    variants = {literal, base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()}
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode()
        first = -(-8 * shift // 6)  # the first character with no bit of the prefix
        last = 8 * (shift + len(raw)) // 6  # the characters before this hold value bits only
        core = encoded[first:last]
        if len(core) >= MIN_LITERAL:
            variants.add(core)
    return variants


def _literal_forms(literals: Sequence[str]) -> tuple[str, ...]:
    """The forms of `literals` to look for (see _literal_variants)."""
    variants: set[str] = set()
    for literal in literals:
        if len(literal) >= MIN_LITERAL:
            variants |= _literal_variants(literal)
    return tuple(variants)


def _literal_spans(text: str, forms: Sequence[str]) -> list[tuple[int, int]]:
    """Where `forms` are in `text`, left to right: the longest where several start together,
    so that a value wins over its own prefix; none overlaps the one before.

    What a regex of them all would find, faster: a substring search skips along by the
    length of a form, and forms are long, while the regex stops at every character.
    """
    found = []
    for form in forms:
        at = text.find(form)
        while at >= 0:
            found.append((at, at + len(form)))
            at = text.find(form, at + 1)
    spans: list[tuple[int, int]] = []
    for start, end in sorted(found, key=lambda span: (span[0], -span[1])):
        if not spans or start >= spans[-1][1]:
            spans.append((start, end))
    return spans


# a value known only by its digest is found as a whole run of these characters (tokens,
# JWTs, base64 and its padding), so `NAME=value` and `user:value` show it whole; a secret
# with other characters is digested run by run
_RUN_CHARS = "A-Za-z0-9+/_.~-"
_RUN = re.compile(f"[{_RUN_CHARS}]+=*")
# run characters as "a", "=" kept, anything else a blank (see _DigestMatcher)
_RUN_FLAT = bytes(
    ord("a") if _RUN.fullmatch(chr(i)) else i if chr(i) == "=" else ord(" ") for i in range(256)
)


# the rest of a run in that copy, after its first characters
_RUN_REST = re.compile(b"a*=*")


def _digest(run: str) -> str:
    import hashlib

    return f"{len(run)}:{hashlib.sha256(run.encode('utf-8')).hexdigest()}"


def literal_digests(secrets: Iterable[str]) -> tuple[str, ...]:
    """Digests of secrets and of the forms they take in base64, by which a masker hides them
    without holding them: a credential cache keeps these instead of the credential.

    Unlike a literal, a digested value is found only as a whole run: glued to other run
    characters (`abc<secret>`) it is left to the detectors."""
    runs = {
        run[0]
        for secret in secrets
        if len(secret) >= MIN_LITERAL
        for variant in _literal_variants(secret)
        for run in _RUN.finditer(variant)
        if len(run[0]) >= MIN_LITERAL
    }
    return tuple(sorted(_digest(run) for run in runs))


class _DigestMatcher:
    """Finds whole runs whose digest is one of `digests` ("LENGTH:SHA256", see
    `literal_digests`); only runs of those lengths are hashed.

    Runs are found as in `b64_candidates`: in a bytes copy where every run character is an "a",
    a run long enough starts where `bytes.find` finds that many "a" (its search skips ahead
    by the length of what it looks for, while a regex for the same literal steps through
    this text of mostly "a" nearly character by character: 5 times slower).
    """

    def __init__(self, digests: Collection[str]) -> None:
        import hashlib

        # by length, the raw SHA-256 of each: a run is hashed and compared with no text made
        self._digests: dict[int, frozenset[bytes]] = {}
        for digest in digests:
            length, _, hexed = digest.partition(":")
            known = self._digests.get(int(length), frozenset())
            self._digests[int(length)] = known | {bytes.fromhex(hexed)}
        self._shortest = b"a" * min(self._digests)
        self._sha256 = hashlib.sha256

    def spans(self, text: str) -> Iterator[tuple[int, int]]:
        flat = text.encode("latin-1", "replace").translate(_RUN_FLAT)
        find, rest, needle = flat.find, _RUN_REST.match, self._shortest
        at = find(needle)
        while at >= 0:
            found = rest(flat, at + len(needle))
            assert found is not None  # (it takes the empty string too)
            end = found.end()
            known = self._digests.get(end - at)
            if known and self._sha256(text[at:end].encode("utf-8")).digest() in known:
                yield at, end
            at = find(needle, end)


def _byte_entropy(raw: bytes) -> float:
    # latin-1 maps each byte to one character, so this is the entropy per byte
    return shannon_entropy(raw.decode("latin-1"))








def _indexed(detector: Detector) -> bool:
    """Whether `detector` runs only where one of its keywords is (an empty one is anywhere)."""
    return bool(detector.keywords) and all(detector.keywords)


def _by_line(detector: Detector) -> bool:
    """Whether `detector` need only run on the lines that hold one of its keywords."""
    keywords = detector.keywords
    return bool(keywords) and not detector.multiline and all(k and "\n" not in k for k in keywords)


def _stretches(lines: list[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    """Sorted (start, end) lines joined into stretches of neighbouring lines.

    Past _MAX_REGIONS stretches one pass over the whole text (of `size`) is cheaper.
    """
    regions: list[tuple[int, int]] = []
    for start, end in lines:
        if regions and start <= regions[-1][1] + 1:
            regions[-1] = (regions[-1][0], max(end, regions[-1][1]))
        else:
            regions.append((start, end))
    return regions if len(regions) <= _MAX_REGIONS else [(0, size)]


# the characters of (lower-cased) kubectl output, most common first; see _Keywords
_COMMON = ' eat:snr0icdo-pm"u1klvb2f4.gy53h/86{}z79w,jqx[]=*|<>_@()'
# a keyword whose rarest character is one of the first this many would, as an anchor, stop
# the regex nearly everywhere: it gets a substring search of its own
_FREQUENT = _COMMON.index("u") + 1


def _rank(char: str) -> int:
    """How rare `char` is in kubectl output: higher is rarer, unlisted ones rarest."""
    return _COMMON.find(char) % (len(_COMMON) + 1)


def _anchor(word: str) -> int:
    """Where a search for `word` starts: its rarest character (the first, if several are)."""
    rank = [_rank(char) for char in word]
    return rank.index(max(rank))


_FIRST = operator.itemgetter(0)
_SECOND = operator.itemgetter(1)


def _line_at(text: str, at: int) -> tuple[int, int]:
    """(start, end) of the line of `text` that holds offset `at`, without its line break."""
    end = text.find("\n", at)
    return text.rfind("\n", 0, at) + 1, len(text) if end < 0 else end


class _Keywords:
    """Where the detectors with keywords run: a one-line detector on the lines that hold one
    of its keywords, a multi-line one on the whole text if it holds one.

    A substring search per keyword reads the text a hundred times. Instead one regex looks
    for the keywords by their rarest character (their anchor) and checks the characters
    around it, so in ordinary text it stops at few places; only a keyword made of common
    characters alone (`asia`, `dd-`), whose anchor would stop the regex everywhere, keeps a
    substring search. Built once per set of detectors (see `_keywords_for`).
    """

    def __init__(self, detectors: tuple[Detector, ...]) -> None:
        self.detectors = detectors
        # the multi-line ones (see _by_line)
        self.whole = frozenset(d for d in detectors if not _by_line(d))
        users: dict[str, list[int]] = {}
        for index, detector in enumerate(detectors):
            for keyword in detector.keywords:
                users.setdefault(keyword, []).append(index)
        self._searched: list[tuple[str, list[int]]] = []
        # by anchor character: (keyword, where its anchor is, the detectors that use it)
        self._anchored: dict[str, list[tuple[str, int, list[int]]]] = {}
        for word, indexes in users.items():
            at = _anchor(word)
            if _rank(word[at]) < _FREQUENT:
                self._searched.append((word, indexes))
            else:
                self._anchored.setdefault(word[at], []).append((word, at, indexes))
        self._regex = "|".join(
            f"(?:{'|'.join(_around(word, at) for word, at, _ in words)})"
            for words in self._anchored.values()
        )
        self._pattern: re.Pattern[str] | None = None  # compiled on first use
        # all keywords at once, when Hyperscan is installed (see masking/literals.py)
        self._words = list(users.items())
        self.scan = literal_scan([word for word, _ in self._words])
        self.longest = max(map(len, users), default=1)
        self._prefiltered = [(i, d) for i, d in enumerate(detectors) if d.prefilter]

    def users(self, word: int) -> list[Detector]:
        """The detectors that use the keyword numbered `word` in `scan`."""
        return [self.detectors[index] for index in self._words[word][1]]

    def regions(
        self, text: str, lowered: str, gate: Gate | None = None
    ) -> Iterator[tuple[Detector, list[tuple[int, int]]]]:
        """Each detector with a keyword in `text` and the stretches of `text` it runs on.

        `lowered` is the text lower-cased (see _lower), as long as the text, so that offsets
        in one hold in the other. A detector whose prefilter `gate` says cannot match runs
        nowhere: the lines of keywords that only such detectors use are not looked up.
        """
        lines: dict[int, set[tuple[int, int]]] = {}
        idle = frozenset(i for i, d in self._prefiltered if gate is not None and not gate[d])
        for indexes, held in self._hits(text, lowered, idle):
            for index in indexes:
                found = lines.get(index)
                if found is None:
                    lines[index] = set(held)
                else:
                    found.update(held)
        for index, held in sorted(lines.items()):
            detector = self.detectors[index]
            whole = detector in self.whole
            yield detector, [(0, len(text))] if whole else _stretches(sorted(held), len(text))

    def _hits(
        self, text: str, lowered: str, idle: frozenset[int] = frozenset()
    ) -> Iterator[tuple[list[int], Collection[tuple[int, int]]]]:
        """The detectors that use a keyword and lines that hold it, for each keyword found
        (perhaps more than once); no lines for a keyword that only `idle` detectors use."""
        if self.scan is not None and scannable(text):
            # by keyword, each hit's line found by map (loops in C): a pod's YAML has a few
            # keywords on every line of its env, a Secret list on every line of its data
            padded = text + "\n"  # a line break after the last line, for str.find
            for number, hits in itertools.groupby(sorted(self.scan.ends(text)), _FIRST):
                keyword, indexes = self._words[number]
                if idle.issuperset(indexes):
                    yield indexes, ()
                    continue
                ats = list(map(operator.sub, map(_SECOND, hits), repeat(len(keyword))))
                breaks = map(text.rfind, repeat("\n"), repeat(0), ats)
                ends = map(padded.find, repeat("\n"), ats)
                yield indexes, set(zip(map(operator.add, breaks, repeat(1)), ends, strict=True))
            return
        for word, indexes in self._searched:
            at = lowered.find(word)
            while at >= 0:
                line = _line_at(text, at)
                yield indexes, (line,)
                at = lowered.find(word, line[1])
        for at in self._anchors(lowered):
            line = _line_at(text, at)
            # every keyword with the anchor found may be there
            for word, offset, indexes in self._anchored[lowered[at]]:
                if at >= offset and lowered.startswith(word, at - offset):
                    yield indexes, (line,)

    def _anchors(self, lowered: str) -> Iterator[int]:
        """Each offset of `lowered` where an anchored keyword's anchor is."""
        if not self._anchored:
            return
        if self._pattern is None:
            self._pattern = re.compile(self._regex)
        search = self._pattern.search
        found = search(lowered)
        while found is not None:
            at = found.start()
            yield at
            found = search(lowered, at + 1)


def _around(word: str, at: int) -> str:
    """A regex for `word` from its character `at` on, looking behind for the whole word."""
    behind = f"(?<={re.escape(word)})" if at else ""
    return re.escape(word[at:]) + behind


@lru_cache(maxsize=8)
def _keywords_for(detectors: tuple[Detector, ...]) -> _Keywords:
    """The keyword index of the detectors with keywords among `detectors`, shared by maskers."""
    return _Keywords(tuple(d for d in detectors if _indexed(d)))


# characters that a (?i) regex takes for an ASCII letter and lower() leaves as they are
_UNLOWERED_FOLDS = ("\u017f", "\u0131")  # ſ (s) and ı (i), looked for as in literals.scannable


def _unlowered_folds(text: str) -> bool:
    """Whether `text` may spell a keyword in a way its lower-cased copy does not show: then
    a (?i) detector could match on a line without its keyword."""
    return not text.isascii() and any(char in text for char in _UNLOWERED_FOLDS)


def _lower(text: str) -> str:
    """`text.lower()` as far as ASCII keywords can tell, and faster.

    str.lower() looks up every character once the text holds one that is not ASCII (a
    placeholder's «»); bytes.lower() only maps A-Z. In latin-1 no other character lowers
    to an ASCII one (the Kelvin sign and İ lie beyond it), so the two agree on keywords.
    """
    try:
        return text.encode("latin-1").lower().decode("latin-1")
    except UnicodeEncodeError:
        return text.lower()


# where each detector's prefilter ended in a text (sorted), by detector
Gate = Mapping[Detector, list[int]]


class _Prefilters:
    """The detectors' prefilters (`Detector.prefilter`) in one Hyperscan database: a detector
    that has one runs only on the stretches of its keyword lines where it ended (each match
    of its regex holds such an end after its first character)."""

    def __init__(self, detectors: tuple[Detector, ...]) -> None:
        self._detectors = tuple(d for d in detectors if d.prefilter)
        self._scan: LiteralScan | None = None
        self._built = False

    def gate(self, text: str, build: bool) -> Gate | None:
        """Where the prefilters end in `text`; None when that cannot tell (no Hyperscan, no
        prefilter, the database not built and `build` false, or the text holds a character
        that (?i) or lower() may read as an ASCII letter, which Hyperscan, reading latin-1,
        does not)."""
        if build and not self._built:
            self._scan, self._built = pattern_scan([d.prefilter for d in self._detectors]), True
        if self._scan is None or not scannable(text) or _unlowered_folds(text):
            return None
        found: dict[Detector, list[int]] = {d: [] for d in self._detectors}
        for number, end in self._scan.ends(text):
            found[self._detectors[number]].append(end)
        return found


def _shifted(gate: Gate, shift: int) -> Gate:
    """A gate of `context + text` as one of `text` (`shift` = len(context)): a superset, as a
    match inside `text` ends its prefilter inside it as well."""
    if not shift:
        return gate
    return {d: [end - shift for end in ends if end > shift] for d, ends in gate.items()}


def _opens(gate: Gate | None, detector: Detector, first: int, last: int) -> bool:
    """Whether `detector` may match in text[first:last] (by `gate`, if it has its prefilter)."""
    ends = gate.get(detector) if gate is not None else None
    if ends is None:
        return True
    at = bisect.bisect_right(ends, first)
    return at < len(ends) and ends[at] <= last


class _DetectorTables(NamedTuple):
    everywhere: tuple[Detector, ...]  # detectors without keywords: tried on every text
    multiline: tuple[Detector, ...]  # detectors whose match may span lines
    keywords: _Keywords
    ascii_keywords: bool
    # on equal spans the file's order decides: vendor formats before generic rules
    rank: dict[str, int]
    prefilters: _Prefilters


@lru_cache(maxsize=8)
def _detector_tables(detectors: tuple[Detector, ...]) -> _DetectorTables:
    """What a scanner derives from its detectors, once per detector set: every masker of a
    run (and every word of an audit record) shares the bundled one."""
    return _DetectorTables(
        everywhere=tuple(d for d in detectors if not _indexed(d)),
        multiline=tuple(d for d in detectors if d.multiline),
        keywords=_keywords_for(detectors),
        ascii_keywords=all(k.isascii() for d in detectors for k in d.keywords),
        rank={d.name: index for index, d in enumerate(detectors)},
        prefilters=_Prefilters(detectors),
    )


class _Present:
    """Which of some detectors may match a text (`Detector.may_match`). With Hyperscan, and
    for an ASCII text, their keywords are found in one pass of the scan the keyword index
    (`_Keywords`) built for all detectors: a database of its own for these few keywords
    would cost a compile, and Hyperscan took 0.25 s for the 18 of the multi-line ones."""

    def __init__(self, detectors: tuple[Detector, ...], index: _Keywords) -> None:
        self.detectors = detectors
        self._index = index
        indexed = frozenset(index.detectors)
        # a detector the index does not hold has no keyword to wait for
        self._always = frozenset(d for d in detectors if d not in indexed)

    def among(self, text: str) -> list[Detector]:
        scan = self._index.scan
        if scan is None or not scannable(text):
            lowered = text.lower()
            return [d for d in self.detectors if d.may_match(lowered)]
        found = set(self._always)
        for word, _ in scan.ends(text):
            found.update(self._index.users(word))
        return [d for d in self.detectors if d in found]


@lru_cache(maxsize=8)
def _present(detectors: tuple[Detector, ...], index: _Keywords) -> _Present:
    return _Present(detectors, index)


class _Scanner:
    """Finds detector matches, literal values and base64 blobs that hide either."""

    def __init__(
        self,
        detectors: Mapping[str, Detector],
        literals: Sequence[str],
        rules: StructureRules,
        digests: Collection[str] = (),
    ) -> None:
        tables = _detector_tables(tuple(detectors.values()))
        self._everywhere, self._multiline, self._keywords, self._ascii_keywords = tables[:4]
        self._rank, self._prefilters = tables.rank, tables.prefilters
        self._literals = _literal_forms(literals)
        self._digests = _DigestMatcher(digests) if digests else None
        self._rules = rules
        # the end of the text masked before: a multi-line match (a value on the line after
        # its label) may begin there and end in the next text
        self._context = ""
        # characters masked; past NOTED_AFTER, the native scans are built (see native_scans)
        self._read = 0
        self._native = False

    def spans(
        self,
        text: str,
        depth: int = 0,
        present: set[Detector | None] | None = None,
        gate: Gate | None = None,
    ) -> list[Span]:
        """The secrets in `text`. `present`, when given, gets each detector whose keyword
        `text` holds, or is cleared and gets None when the text was searched without the
        keyword index (see `_continued`). `gate`: the prefilters' ends in `text` when known
        (else found here, if a detector with one is to run)."""
        lowered = _lower(text) if self._ascii_keywords else text.lower()
        found: list[Span] = []
        for detector in self._everywhere:
            found.extend((s, e, detector.name) for s, e in detector.find(text))
        # lower() keeps offsets unless a character changes length (İ); then search it all
        if len(lowered) == len(text) and not _unlowered_folds(text):
            if gate is None and not depth:  # (a decoded blob is short: found if needed)
                gate = self._prefilters.gate(text, self._native)
            for detector, regions in self._keywords.regions(text, lowered, gate):
                if present is not None:
                    present.add(detector)
                if gate is None and detector.prefilter:
                    gate = self._prefilters.gate(text, self._native)
                for first, last in regions:
                    if _opens(gate, detector, first, last):
                        found.extend(
                            (s, e, detector.name) for s, e in detector.find(text, first, last)
                        )
        else:
            if present is not None:
                present.clear()
                present.add(None)
            for detector in self._keywords.detectors:
                if detector not in self._keywords.whole or detector.may_match(lowered):
                    found.extend((s, e, detector.name) for s, e in detector.find(text))
        found.extend((s, e, LITERAL) for s, e in _literal_spans(text, self._literals))
        if self._digests is not None:
            found.extend((s, e, LITERAL) for s, e in self._digests.spans(text))
        if depth < BASE64_DEPTH:
            found.extend(self._base64_spans(text, lowered, _merge(found), depth))
            if '\\"' in text:
                found.extend(self._escaped_spans(text, depth))
        return _merge(found, self._rank)

    def _escaped_spans(self, text: str, depth: int) -> Iterator[Span]:
        """Secrets in JSON written inside a JSON string (`"{\\"password\\": \\"x\\"}"`:
        Terraform state, last-applied copies): each such string is read unescaped, and
        what is found there is masked in its escaped form."""
        for literal in ESCAPED_STRING.finditer(text):
            decoded, where = unescape(literal.group(1))
            base = literal.start(1)
            for start, end, name in self.spans(decoded, depth + 1):
                yield base + where[start], base + where[end], name

    def mask(self, text: str) -> str:
        """Mask the next text of a stream (`spans` of it, and the multi-line matches that
        began in the text before)."""
        if not text:
            return text
        present: set[Detector | None] | None = None
        context = self._context
        self._read += len(text)
        self._native = self._native or self._read >= NOTED_AFTER
        # the prefilters' ends, found once for both searches (a superset for `text` alone)
        gate = self._prefilters.gate(context + text, self._native)
        if "\x1b" in text:
            found = ansi_spans(text, self.spans)
        else:
            present = set()
            shifted = _shifted(gate, len(context)) if gate is not None else None
            found = self.spans(text, present=present, gate=shifted)
        if context and self._multiline:
            found = _merge(found + self._continued(context, text, present, gate), self._rank)
        self._context = _last_lines((context + text)[-_CONTEXT_SIZE:], _CONTEXT_LINES)
        return _splice(text, found)

    def _continued(
        self,
        context: str,
        text: str,
        present: set[Detector | None] | None = None,
        gate: Gate | None = None,
    ) -> list[Span]:
        """Multi-line matches over `context + text` that end in `text`, as spans of `text`.

        `present`: the detectors whose keywords `spans` found in `text` (None: unknown).
        A keyword of `context + text` lies in `text`, or starts in `context`, so that only
        their meeting needs a search of its own, not all of `text` again."""
        joined = context + text
        shift = len(context)
        among = _present(self._multiline, self._keywords).among
        if present is None or None in present:
            detectors = among(joined)
        else:
            edge = set(among(joined[: shift + self._keywords.longest - 1]))
            detectors = [d for d in self._multiline if d in present or d in edge]
        return [
            (max(start - shift, 0), end - shift, detector.name)
            for detector in detectors
            if _opens(gate, detector, 0, len(joined))
            for start, end in detector.find(joined)
            if end > shift
        ]

    def _base64_spans(
        self, text: str, lowered: str, known: list[Span], depth: int
    ) -> Iterable[Span]:
        for start, end in _b64_found(text, lowered, self._native):
            if known and any(s < end and start < e for s, e, _ in known):
                continue
            name = self._decoded_secret(text, start, end, depth)
            if name is not None:
                yield start, end, name

    def _decoded_secret(self, text: str, start: int, end: int, depth: int) -> str | None:
        """The name of what the base64 (or hex) blob text[start:end] hides, or None."""
        blob = text[start:end]
        hexed = HEX.fullmatch(blob) is not None and len(blob) % 2 == 0
        raw = bytes.fromhex(blob) if hexed else b64decode(blob)
        if raw is None:
            return None
        suffix = "+hex" if hexed else "+base64"
        if raw[:2] == GZIP_MAGIC:
            raw = gunzip(raw)
            if raw is None:
                return None
            suffix = "+gzip" + suffix
        decoded = raw.decode("utf-8", "replace")
        # mostly text (a cut-off multi-byte character or two is fine) or binary
        if decoded.count("\ufffd") * 20 > len(decoded):
            return BINARY if self._binary_is_secret(raw, text, start) else None
        inner = self.spans(decoded, depth + 1)
        if not inner:
            return None
        name = re.sub(r"(?:\+(?:gzip|base64|hex))+$", "", inner[0][2])
        return name + suffix

    def _binary_is_secret(self, raw: bytes, text: str, start: int) -> bool:
        """Random-looking bytes under a secret-looking key (`encryption-key: <base64>`)."""
        if len(raw) < 16 or PATH_LIKE.match(text, start):
            return False
        line_start = max(text.rfind("\n", 0, start) + 1, start - _KEY_WINDOW)
        key = _KEY_BEFORE_REVERSED.match(text[line_start:start][::-1])
        name = key.group(1)[::-1] if key is not None else _list_key(text, start)
        if name is None or not self._secret_named(name):
            return False
        return _byte_entropy(raw) >= BINARY_ENTROPY

    def _secret_named(self, name: str) -> bool:
        """Whether a key names a secret."""
        rules = self._rules
        return name.lower() in rules.credential_keys or _names_secret(rules.secret_name, name)


@lru_cache(maxsize=4096)
def _names_secret(secret_name: re.Pattern[str], name: str) -> bool:
    """Whether a key or an env entry's name looks secret (`structure.secret_name`); kept, as
    an output repeats its few names many times."""
    return secret_name.search(name) is not None


def _b64_found(text: str, lowered: str, build: bool = True) -> list[tuple[int, int]]:
    """The base64 runs and tokens `_Scanner` decodes, in order: all but paths, and but hex of
    bytes (HEX_BINARY), which counts only on a line that may name a secret (ids, digests and
    trace ids).

    With Hyperscan, one pass finds the lines of the tokens that count anywhere
    (`encodings.TOKEN_LINES`, a superset), the first lines of wrapped runs, and whether a
    token starts with 16 hex digits (only then are naming lines looked for), and tokens are
    looked for on those lines only: a log's lines each hold ids that would otherwise be
    found and told apart one by one (tests/test_mask.py compares this with the plain way).
    `build`: build that scan if it is not (see native_scans)."""
    scan = _token_lines_scan(build)
    if scan is None or not scannable(text):
        runs, tokens, hex_binary = b64_candidates(text)
        naming = _naming_lines(text, lowered) if hex_binary else set()
        named = _on_naming_lines(text, naming, hex_binary)
        return _not_paths(text, runs + (sorted(tokens + named) if named else tokens))
    hits = scan.ends(text)
    # by pattern: the token lines, the run lines, a hex start (map: loops in C)
    numbers = list(map(_FIRST, hits))
    ends = list(map(_SECOND, hits))
    run_line = len(TOKEN_LINES)

    def lines_of(chosen: Iterable[bool]) -> set[int]:
        last = map(operator.sub, compress(ends, chosen), repeat(1))
        return set(map(operator.add, map(text.rfind, repeat("\n"), repeat(0), last), repeat(1)))

    hot = lines_of(map(operator.lt, numbers, repeat(run_line)))
    run_lines = sorted(lines_of(map(operator.eq, numbers, repeat(run_line))))
    # hex of bytes counts on naming lines only, looked for where a token may be one
    naming = _naming_lines(text, lowered) if run_line + 1 in numbers else set()
    starts = sorted(hot | naming)
    padded = text + "\n"
    line_ends = list(map(padded.find, repeat("\n"), starts))
    runs, tokens, hex_binary = b64_candidates_in(text, starts, line_ends, run_lines)
    named = _on_naming_lines(text, naming, hex_binary)
    return _not_paths(text, runs + (sorted(tokens + named) if named else tokens))


def _not_paths(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """`spans` but those that start a path (`/api/v1/orders/4711`, `/var/secrets/x.json`:
    letters, no base64), told by a loop in C."""
    if not spans:
        return spans
    paths = map(PATH_LIKE.match, repeat(text), *zip(*spans, strict=True))
    return list(compress(spans, map(operator.not_, paths)))


_NATIVE: dict[str, LiteralScan | None] = {}


def _token_lines_scan(build: bool) -> LiteralScan | None:
    """`encodings.TOKEN_LINES`, `RUN_LINE` and `HEX_START` (once) in one Hyperscan database,
    when Hyperscan is installed; built if `build`, else None until it is."""
    if "tokens" not in _NATIVE:
        if not build:
            return None
        _NATIVE["tokens"] = pattern_scan((*TOKEN_LINES, RUN_LINE), once=(HEX_START,))
    return _NATIVE["tokens"]


def _on_naming_lines(
    text: str, named: set[int], spans: list[tuple[int, int]]
) -> list[tuple[int, int]]:
    """The sorted one-line spans that lie on a line that may name a secret (`named`: where
    those lines start, see _naming_lines).

    Whichever is fewer is walked: the spans (their line's start looked up), or the naming
    lines (the spans on them found by bisection); a log has many ids and few such lines.
    """
    if not spans:
        return []
    if len(spans) <= len(named):
        return [span for span in spans if text.rfind("\n", 0, span[0]) + 1 in named]
    starts = [start for start, _ in spans]
    found: list[tuple[int, int]] = []
    for line_start in sorted(named):
        line_end = text.find("\n", line_start) + 1 or len(text)
        first = bisect.bisect_left(starts, line_start)
        found += spans[first : bisect.bisect_left(starts, line_end)]
    return found


def _naming_lines(text: str, lowered: str) -> set[int]:
    """Where the lines start that could name a value on them a secret: they hold a word of a
    secret's name, or are list items (whose key is on a line above). Substring searches:
    a regex for all of them, case-insensitive, would be tried at every character.

    `lowered` is the text lower-cased, as `_Scanner.spans` has it."""
    starts: set[int] = set()
    scan = _secret_words_scan()
    # (map: loops in C; a pod's YAML has a few such words on every line of its env)
    if scan is not None and scannable(text):
        ends = map(operator.itemgetter(1), scan.ends(text))
        breaks = map(text.rfind, repeat("\n"), repeat(0), ends)
        starts.update(map(operator.add, breaks, repeat(1)))
    else:
        _add_naming_lines(text, lowered, starts)
    breaks = map(re.Match.start, _LIST_ITEM_LINE.finditer(text))
    starts.update(map(operator.add, breaks, repeat(1)))
    if _LIST_ITEM.match(text):
        starts.add(0)
    return starts


@functools.cache
def _secret_words_scan() -> LiteralScan | None:
    """The words of a secret's name found at once, when Hyperscan is installed."""
    return literal_scan(_SECRET_WORDS)


def _add_naming_lines(text: str, lowered: str, starts: set[int]) -> None:
    """The starts of the lines that hold a word of a secret's name, the plain way."""
    for word in _SECRET_WORDS:
        at = lowered.find(word)
        while at >= 0:
            starts.add(text.rfind("\n", 0, at) + 1)
            # the line's end in `lowered`, where the search goes on: lower() makes İ two
            # characters, and an offset of `text` there could find this word again, forever
            line_end = lowered.find("\n", at)
            at = lowered.find(word, line_end) if line_end >= 0 else -1


def _last_lines(text: str, count: int) -> str:
    """The last `count` lines of `text` (the last one perhaps unfinished)."""
    at = len(text)
    for _ in range(count + 1):
        at = text.rfind("\n", 0, at)
        if at < 0:
            return text
    return text[at + 1 :]


def _list_key(text: str, start: int) -> str | None:
    """The key of the YAML list whose item starts at `start` (`KEY:` above `- item` lines)."""
    line_start = text.rfind("\n", 0, start) + 1
    if _LIST_ITEM.fullmatch(text, line_start, start) is None:
        return None
    indent = start - line_start
    for _ in range(_LIST_LOOKBACK):
        if line_start == 0:
            return None
        above = text.rfind("\n", 0, line_start - 1) + 1
        line = text[above : line_start - 1]
        item = _LIST_ITEM.match(line)
        if item is not None and item.end() == indent:
            line_start = above
            continue
        parent = _LIST_PARENT.fullmatch(line)
        return parent.group(1) if parent is not None else None
    return None






# --------------------------------------------------------------------------- structure


def _replace_value(line: str, start: int, end: int, name: str) -> str:
    """`line` with the scalar at [start, end) replaced, its quotes and JSON comma kept."""
    value = line[start:end]
    if value.endswith(","):
        end -= 1
        value = value[:-1]
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        start, end = start + 1, end - 1
        value = value[1:-1]
    if _not_a_value(value):
        return line
    return line[:start] + placeholder(name) + line[end:]


def _mask_content(line: str, name: str) -> str:
    """A whole line's content replaced, its indentation and line break kept."""
    body = line.rstrip("\r\n")
    stripped = body.lstrip(" ")
    if not stripped:
        return line
    return line[: len(body) - len(stripped)] + placeholder(name) + line[len(body) :]


# One key/value line: (key, level, value, start, end) are the key, its column, the value and
# where the value sits in the line. A plain tuple: nearly every line of output makes one, and
# creating a NamedTuple or a class instance costs more than reading the line.
_Entry = tuple[str, int, str, int, int]


def _entry(line: str, lead: int) -> _Entry | None:
    """Read `key: value` (YAML) or `"key": value` (JSON) from a line; None for other lines."""
    body = line.rstrip(" \t\r\n")
    # slices, not a regex or startswith(): this runs for nearly every line of YAML output
    if body[lead : lead + 1] == '"':
        match = _JSON_KEY.match(body, lead)
        if match is None:
            return None
        return match["key"], lead, body[match.end() :], match.end(), len(body)
    level = lead + 2 if body[lead : lead + 2] == "- " else lead
    colon = body.find(": ", level)
    if colon < 0:
        if body[-1:] != ":":
            return None
        colon = len(body) - 1
    key = body[level:colon]
    if not key or key[0] in _NOT_A_KEY_START:
        return None
    value = body[colon + 1 :].lstrip(" ")
    return key.strip("\"'"), level, value, len(body) - len(value), len(body)


def _scalar(value: str) -> bool:
    """A value that is a scalar on this line (not a nested mapping, list or block header)."""
    return not _not_a_value(value.rstrip(",")) and value[:1] not in "{[" and not _is_block(value)


def _not_a_value(value: str) -> bool:
    # the length first: hashing a long value (a base64 blob) to look it up costs more
    return len(value) <= _LONGEST_NOT_A_VALUE and value in _NOT_A_VALUE


def _is_block(value: str) -> bool:
    return value[:1] in ("|", ">") and _BLOCK_HEADER.fullmatch(value) is not None


class _Section:
    """The `data:`/`stringData:` mapping of one object, held until its kind is known."""

    __slots__ = ("level", "secret", "open", "held", "masked", "size")

    def __init__(self, level: int, secret: bool | None) -> None:
        self.level = level
        self.secret = secret  # None: kind not known yet, lines are held
        self.open = True  # still inside the mapping
        self.held: list[str] = []
        self.masked: dict[int, str] = {}  # held index -> the line masked
        self.size = 0


class _Block(NamedTuple):
    """A YAML block scalar (`key: |`): its key's column and what to do with its lines."""

    level: int
    mask: str | None = None  # the mask name when every content line is secret
    # a block of a data mapping whose object's kind is still to come: its lines are held,
    # masked or not as the section decides
    section: _Section | None = None


# a `name:`, `key:` or `value:` line (YAML or JSON), which `_Structure` only reads to see
# whether it names a secret
# (the value starts after every blank: it is empty or starts with a character a blank is not,
# so that a line without its line break fails after one pass, not one per blank)
_NAMED_LINE = re.compile(
    r'(?P<lead>[ ]*)(?:- )?(?:(?:name|key|value):|"(?:name|key|value)":)[ ]*'
    r"(?P<value>(?:[^ \n][^\n]*)?)\n"
)
# keys that `_Structure._keyed_line` reads by name, besides data and credential keys
_KEYS_READ = frozenset({"kind", "name", "key", "value", "Type", "Name"})


def _untouched_line(watched: Iterable[str], credential_keys: Iterable[str]) -> str:
    """A regex for one line that `_Structure` passes on unchanged, changing no state, when
    no block, section, env name or describe output is open and the line holds no `"Secret`.

    That is a `key: value` (YAML, perhaps a list item) or `"key": value` (JSON) whose key
    no rule reads and whose value is no block header, or a line without a colon (not a
    `---`, `====` or `Data` line; colons are fine that no blank or line break follows), after
    the line's leading spaces. Each form is narrower
    than what `_entry` reads, so a line this misses is simply read on its own.
    """
    names = "|".join(re.escape(k) for k in sorted(watched))
    lowered = "|".join(re.escape(k) for k in sorted(credential_keys))
    special = f"{names}|(?i:{lowered})" if lowered else names
    key = r"[A-Za-z0-9][A-Za-z0-9_./-]*"
    yaml_line = rf"(?:- )?(?!(?:{special}):){key}:(?:\r?\n|[ ](?![ ]*[|>])[^\n]*\n)"
    json_line = rf'"(?!(?:{special})":){key}":(?![^\S\n]*[|>])[^\n]*\n'
    # (a colon is fine where no blank or line break follows it: a time, a URL)
    plain_line = r'(?!Data\r*\n)[^\s:="-][^:\n]*(?::(?![ \t\r\n])[^:\n]*)*\n'
    # No possessive quantifier (Python 3.10 has none): each repeat is followed by a character
    # it cannot take, so a line that is none of these fails after one pass over it.
    return f"[ ]*(?:{yaml_line}|{json_line}|{plain_line})"


# what Hyperscan reads a character beyond ASCII as: latin-1's own byte, or a "?"
_BEYOND_ASCII = r"[\x80-\xff?]"
# the blanks `\s` takes in a line, as Hyperscan reads them (beyond latin-1: a "?")
_BLANK = r"[ \t\r\x0b\x0c\x1c-\x1f\x85\xa0?]"


def _key_line(keys: str) -> str:
    """A Hyperscan regex for a line whose key (YAML or JSON, quoted or not, a list item or
    not) is one of `keys` (a regex), up to its colon. (`[ '"-]*` takes more than the blanks,
    `- ` and quotes before a key, and Hyperscan compiles it several times faster.)"""
    return f"^[ '\"-]*(?:{keys})['\"]*:"


def _hs_words(words: Iterable[str]) -> str:
    return "|".join(re.escape(w) for w in sorted(words))


def _noted_lines(rules: StructureRules) -> list[str]:
    """Hyperscan regexes for the lines that `_Structure._line` may act on when no block, data
    section or describe output is open (see `_Structure._skip`): every other line there it
    passes on unchanged, and notes nothing but its indentation (which may close objects).

    A superset: a line found here is read by `_line`, which may still leave it alone. The
    first is the `value:` line, which acts only under an env entry's secret-looking name.
    A secret's name holds one of _SECRET_WORDS (as `_naming_lines` takes it too); text beyond
    ASCII, where (?i) takes ſ for s or the Kelvin sign for k, is read by `_line`.
    """
    read = rules.data_keys | {"kind", "Type", "Name"}
    hint = f"(?i:{_hs_words(_SECRET_WORDS)})|{_BEYOND_ASCII}"
    return [
        _key_line("value"),
        _key_line(_hs_words(read)),
        _key_line(f"(?i:{_hs_words(rules.credential_keys)})") if rules.credential_keys else "(?!)",
        _key_line("name|key") + f"[^\n]*(?:{hint})",  # an env entry's name, a `key:` pair
        f":{_BLANK}*[|>]",  # a block scalar's header (or a value that looks like one)
        f'"(?:{_hs_words(rules.secret_kinds)})' if rules.secret_kinds else "(?!)",
        r"^[ ]*(?:Data|====)",  # `kubectl describe secret`
        r"^---",
        f"^[^\n]*{_BEYOND_ASCII}[^\n]*:",  # a key beyond ASCII (lower() may make it one)
    ]


class _StructurePatterns(NamedTuple):
    # a line that may hold a Secret as JSON: `"Secret` and `"data"` in any escaping
    kind: re.Pattern[str]
    data_needle: re.Pattern[str]
    data_object: re.Pattern[str]
    # the keys `_keyed_line` reads (and credential keys, lower-cased): runs stop at them
    untouched_line: str


@lru_cache(maxsize=8)
def _structure_patterns(rules: StructureRules) -> _StructurePatterns:
    """The structure rules' patterns, built once per rule set (every masker shares them)."""
    kinds = "|".join(re.escape(k) for k in sorted(rules.secret_kinds))
    keys = "|".join(re.escape(k) for k in sorted(rules.data_keys))
    return _StructurePatterns(
        kind=re.compile(f'"(?:{kinds})'),
        data_needle=re.compile(rf'"(?:{keys})\\*"'),
        data_object=re.compile(rf'(?P<q>\\*)"(?:{keys})(?P=q)"\s*:\s*\{{(?P<body>[^{{}}]*)\}}'),
        untouched_line=_untouched_line(rules.data_keys | _KEYS_READ, rules.credential_keys),
    )


# Compiling the Hyperscan database of _noted_lines takes tens of milliseconds, more than a
# short output takes to mask without it: a masker builds it once it has read this much.
NOTED_AFTER = 512 * 1024
_NOTED: dict[StructureRules, LiteralScan | None] = {}


def noted_lines_scan(rules: StructureRules) -> LiteralScan | None:
    """The Hyperscan database of `_noted_lines(rules)`, built on first use and kept; None
    without Hyperscan. (The broker and fork server build it before they fork.)"""
    if rules not in _NOTED:
        _NOTED[rules] = pattern_scan(_noted_lines(rules))
    return _NOTED[rules]


def native_scans(detectors: Mapping[str, Detector], rules: StructureRules) -> None:
    """Build the Hyperscan databases a long output needs (the lines structure rules act
    on, the lines of base64 tokens, the detectors' prefilters: about 0.1 s) now: a masker
    builds them once it has read NOTED_AFTER characters, as they cost more than a short
    output takes to mask without them. (The broker and fork server build them before they
    fork.)"""
    noted_lines_scan(rules)
    _token_lines_scan(True)
    _detector_tables(tuple(detectors.values())).prefilters.gate("", True)


@lru_cache(maxsize=64)
def _shallow_line(lead: int) -> re.Pattern[str]:
    """A line break before a line (perhaps blank) indented by fewer than `lead` spaces."""
    return re.compile(f"\n[ ]{{0,{lead - 1}}}[^ \n]")


class _Structure:
    """Line-by-line reading of YAML, JSON and describe output, masking what structure says.

    `push(text)` takes complete lines and returns the lines ready to go on, in order; lines
    of a data section wait until its object's kind is known.
    """

    def __init__(self, rules: StructureRules, all_secret: bool, sections: bool = True) -> None:
        self._rules = rules
        self._all_secret = all_secret
        # whether `data:` opens a data mapping (not in `describe` output, where a volume
        # may be called `data`)
        self._sections = sections
        self._kinds: list[tuple[int, str]] = []  # (column, kind) of the enclosing objects
        self._section: _Section | None = None
        self._block: _Block | None = None
        self._env_level: int | None = None  # column of `name: SECRET_NAME` awaiting `value:`
        patterns = _structure_patterns(rules)
        self._kind_search = patterns.kind.search
        self._data_needle = patterns.data_needle
        self._data_object = patterns.data_object
        self._describe_secret = all_secret
        self._describe_data = False
        self._previous = ""
        self._untouched_line = patterns.untouched_line
        self._untouched_runs: dict[int, re.Pattern[str]] = {}  # by the fewest leading spaces
        self._noted_scan = _NOTED.get(rules)
        self._read = 0  # characters pushed, until the scan of noted lines is built
        # where the lines of the text pushed start that `_line` must read (see _noted_lines)
        self._noted: list[int] = []
        self._noted_keys: list[int] = []  # ... but those that are only `value:` lines
        self._out: list[str] = []

    @property
    def held(self) -> int:
        return self._section.size if self._section else 0

    def push(self, text: str) -> list[str]:
        """Read lines, the last one perhaps without its line break; what is ready to go on."""
        pos, size = 0, len(text)
        self._note(text)
        while pos < size:
            pos = self._untouched(text, pos)
            if pos < size:
                end = text.find("\n", pos) + 1 or size
                self._line(text[pos:end])
                pos = end
        out, self._out = self._out, []
        return out

    def release(self) -> list[str]:
        """Decide every open question the safe way (mask) and return what was held."""
        if self._section is not None and self._section.secret is None:
            self._decide(True)
        out, self._out = self._out, []
        return out

    # -- one line

    def _untouched(self, text: str, pos: int) -> int:
        """Pass on the lines from `pos` that nothing would change or note; where they end.

        Most lines of YAML or JSON are such lines, and one regex match over them is much
        cheaper than reading them one by one. Only in a calm state: no block, data section,
        env name or describe output open, and no object closed by a line's indentation.
        """
        if self._block is not None or self._section is not None or self._describe_data:
            return pos
        if self._noted_scan is not None:
            return self._skip(text, pos)
        if self._env_level is not None:
            return pos
        lead = self._kinds[-1][0] if self._kinds else 0
        runs = self._untouched_runs.get(lead)
        if runs is None:
            runs = re.compile(f"(?:[ ]{{{lead}}}{self._untouched_line})+")
            self._untouched_runs[lead] = runs
        end = pos
        while True:
            found = runs.match(text, end)
            end = found.end() if found is not None else end
            named = _NAMED_LINE.match(text, end)
            if named is None or len(named["lead"]) < lead or self._names_secret(named["value"]):
                break
            end = named.end()  # a name, key or value that names nothing secret: no state
        if end == pos:
            return pos
        needle = self._kind_search(text, pos, end)
        if needle is not None:  # the run stops before the line that may hold a Secret
            end = text.rfind("\n", pos, needle.start()) + 1 or pos
        if end > pos:
            self._out.append(text[pos:end])
            self._previous = ""  # what `_line` keeps of them: none of them is `Data`
        return end

    def _note(self, text: str) -> None:
        """Find the lines of `text` that `_skip` stops at (with Hyperscan only)."""
        scan = self._noted_scan
        if scan is None:
            self._read += len(text)
            if self._read < NOTED_AFTER:
                return
            self._noted_scan = scan = noted_lines_scan(self._rules)
            if scan is None:
                return
        starts: dict[int, bool] = {}  # line start -> whether it is only a `value:` line
        for number, end in scan.ends(text):
            start = text.rfind("\n", 0, end - 1) + 1
            starts[start] = starts.get(start, True) and number == 0
        self._noted = sorted(starts)
        self._noted_keys = [start for start in self._noted if not starts[start]]

    def _skip(self, text: str, pos: int) -> int:
        """`_untouched` with Hyperscan: pass on the lines from `pos` up to the next one that
        `_line` may act on (see `_noted_lines`), in a calm state or under an env entry's name.

        Such a line, or one indented less than the innermost object or env entry (which
        closes it: `_end_objects` is all `_line` would do), ends a stretch. A `value:` line
        counts only under an env entry's name. An unfinished last line is left to `_line`.
        """
        limit = text.rfind("\n") + 1
        end = pos
        while end < limit:
            # a `value:` line counts only under an env entry's name
            noted = self._noted if self._env_level is not None else self._noted_keys
            at = bisect.bisect_left(noted, end)
            stop = min(noted[at], limit) if at < len(noted) else limit
            lead = max(self._kinds[-1][0] if self._kinds else 0, self._env_level or 0)
            shallow = self._shallow(text, end, stop, lead) if lead else stop
            if shallow < stop:  # closes objects or an env entry, and is passed on
                end = text.find("\n", shallow) + 1
                body = text[shallow:end].rstrip("\r\n")
                stripped = body.lstrip(" ")
                if stripped:
                    self._end_objects(len(body) - len(stripped))
                continue
            end = stop
            break
        if end > pos:
            self._out.append(text[pos:end])
            if _has_content(text, pos, end):
                self._previous = ""  # what `_line` keeps of the last: none of them is `Data`
        return end

    @staticmethod
    def _shallow(text: str, start: int, stop: int, lead: int) -> int:
        """Where the first line in text[start:stop] indented by fewer than `lead` spaces
        starts (perhaps a blank line), or `stop`."""
        if start == 0 or text[start - 1] == "\n":
            first = _shallow_line(lead).match("\n" + text[start : start + lead])
            if first is not None:
                return start
        found = _shallow_line(lead).search(text, start, stop)
        return found.start() + 1 if found is not None else stop

    def _names_secret(self, value: str) -> bool:
        """Whether `name: VALUE` (or `key:`) names something secret, or opens a block."""
        plain = value.strip("\"',\r")
        return _is_block(plain) or _names_secret(self._rules.secret_name, plain)

    def _line(self, line: str) -> None:
        body = line.rstrip("\r\n")
        stripped = body.lstrip(" ")
        if not stripped:
            self._describe_data = False
            self._emit(line)
            return
        lead = len(body) - len(stripped)
        block = self._block
        if block is not None:
            if lead > block.level:
                self._block_content(line, block)
                return
            self._block = None
        if lead == 0 and stripped.startswith("---"):
            self._end_objects(-1)
            self._emit(line)
            return
        section = self._section
        kinds = self._kinds
        # what this line may close (see _end_objects): the stack of kinds is ordered by
        # column, so only its top; a section only from its own column, or once it is shut
        if (
            (kinds and kinds[-1][0] > lead)
            or self._env_level is not None
            or (section is not None and (lead <= section.level or not section.open))
        ):
            self._end_objects(lead)
            section = self._section
        if section is not None and section.open and lead > section.level:
            self._section_line(line, lead, section)
            return
        entry = _entry(body, lead)
        self._emit(self._keyed_line(line, entry) if entry else self._plain_line(line, stripped))
        self._previous = stripped

    def _end_objects(self, lead: int) -> None:
        """Forget objects, sections and env names that a line at column `lead` closes."""
        while self._kinds and self._kinds[-1][0] > lead:
            self._kinds.pop()
        if self._env_level is not None and lead < self._env_level:
            self._env_level = None
        section = self._section
        if section is None:
            return
        if section.open and lead <= section.level:
            section.open = False
        if section.secret is None and lead < section.level:
            self._decide(True)  # the object ended and never said its kind: assume Secret
        elif section.secret is not None and not section.open:
            self._section = None

    def _section_line(self, line: str, lead: int, section: _Section) -> None:
        """A line inside a data mapping: every value there is secret if the object is."""
        entry = _entry(line, lead)
        if entry is not None and _is_block(entry[2]):
            if section.secret is None:
                self._block = _Block(entry[1], section=section)
            else:
                self._block = _Block(entry[1], mask=SECRET_DATA if section.secret else None)
            self._emit(line)
        elif section.secret is None:
            section.masked[len(section.held)] = _mask_entry(line, entry)
            self._emit(line)
        else:
            self._emit(_mask_entry(line, entry) if section.secret else line)

    def _keyed_line(self, line: str, entry: _Entry) -> str:
        # each key named here is in _KEYS_READ, or runs of untouched lines would skip it
        rules = self._rules
        key, level, value, start, end = entry
        if key == "kind" and value:
            self._kind(level, value.strip("\"',"))
        elif key in rules.data_keys and value.rstrip(",") in ("", "{") and self._sections:
            self._open_section(level)
        elif _is_block(value):
            self._block = self._block_for(key, level)
        elif self._describe_data and self._describe_secret and level == 0:
            # `kubectl describe secret` prints sizes; anything else there is a value
            if not _DESCRIBE_SIZE.fullmatch(value):
                return _replace_value(line, start, end, SECRET_DATA)
        elif key.lower() in rules.credential_keys and _scalar(value):
            return _replace_value(line, start, end, CREDENTIAL)
        elif key in ("name", "key") and _names_secret(rules.secret_name, value.strip("\"',")):
            # an env entry (`name:`), or a `key:`/`value:` pair (external-secrets' stores)
            self._env_level = level
        elif key == "value" and self._env_level == level:
            self._env_level = None
            return _replace_value(line, start, end, SECRET_ENV)
        elif key == "Type" and level == 0:
            self._describe_secret = True
        elif key == "Name" and level == 0:
            self._describe_secret = self._all_secret
        return self._embedded(line, entry)

    def _plain_line(self, line: str, stripped: str) -> str:
        if stripped.startswith("====") and self._previous == "Data":
            self._describe_data = True
        return self._embedded(line)

    def _embedded(self, line: str, entry: _Entry | None = None) -> str:
        """Mask the data of a whole Secret written as JSON inside one line.

        That is the last-applied annotation (a block scalar line in YAML, an escaped JSON
        string in -o json) or a compact JSON line (`jq -c`). Parsed JSON is printed again
        compactly; text that does not parse has its data pairs masked by pattern, and a
        line that fits neither is masked whole.
        """
        if not (self._kind_search(line) and self._data_needle.search(line)):
            return line
        value = entry[2].rstrip(",") if entry else ""
        if entry is not None and value.startswith('"{'):
            try:
                masked = self._json_line(json.loads(value))
            except (ValueError, TypeError):
                masked = None
            if masked is not None:
                quoted = json.dumps(masked, ensure_ascii=False)
                start = entry[3]
                return line[:start] + quoted + line[start + len(value) :]
        elif line.lstrip().startswith("{"):
            masked = self._json_line(line)
            if masked is not None:
                return masked
        return self._data_pairs(line)

    def _data_pairs(self, line: str) -> str:
        """Each `"key":"value"` in the line's data objects masked, any JSON escaping level."""
        parts: list[str] = []
        pos = 0
        for found in self._data_object.finditer(line):
            body = found["body"]
            if '"' in _JSON_PAIR.sub("", body):
                return _mask_content(line, SECRET_DATA)  # a pair this pattern cannot read
            parts.append(line[pos : found.start("body")])
            parts.append(_JSON_PAIR.sub(_masked_pair, body))
            pos = found.end("body")
        if not parts:
            return _mask_content(line, SECRET_DATA)  # data it cannot find: nested braces
        return "".join(parts) + line[pos:]

    def _block_for(self, key: str, level: int) -> _Block:
        if key.lower() in self._rules.credential_keys:
            return _Block(level, mask=CREDENTIAL)
        if key == "value" and self._env_level == level:
            return _Block(level, mask=SECRET_ENV)
        return _Block(level)

    def _block_content(self, line: str, block: _Block) -> None:
        section = block.section
        if section is None or section is not self._section:
            self._emit(self._block_line(line, block))
        elif section.secret is None:
            section.masked[len(section.held)] = _mask_content(line, SECRET_DATA)
            self._emit(line)
        else:  # decided while the block went on
            self._emit(_mask_content(line, SECRET_DATA) if section.secret else line)

    def _block_line(self, line: str, block: _Block) -> str:
        if block.mask is not None:
            return _mask_content(line, block.mask)
        return self._embedded(line)

    # -- kinds and data sections

    def _secret_kind(self, kind: Any) -> bool:
        """Whether an object of `kind` (None: unknown) has secret data; unknown counts as yes."""
        return self._all_secret or not isinstance(kind, str) or kind in self._rules.secret_kinds

    def _json_line(self, text: str) -> str | None:
        return _mask_json_text(text, self._rules.data_keys, self._secret_kind)

    def _kind(self, level: int, kind: str) -> None:
        while self._kinds and self._kinds[-1][0] >= level:
            self._kinds.pop()
        self._kinds.append((level, kind))
        section = self._section
        if section is not None and section.secret is None and section.level == level:
            self._decide(self._secret_kind(kind))

    def _open_section(self, level: int) -> None:
        section = self._section
        if section is not None and section.secret is None and section.level == level:
            section.open = True  # data and stringData of one object, before its kind
            return
        if section is not None and section.secret is None:
            self._decide(True)
        known = next((k for lvl, k in self._kinds if lvl == level), None)
        secret = True if self._all_secret else (self._secret_kind(known) if known else None)
        self._section = _Section(level, secret)

    def _decide(self, secret: bool) -> None:
        section = self._section
        assert section is not None
        if secret:
            for index, masked in section.masked.items():
                section.held[index] = masked
        self._out.extend(section.held)
        section.secret, section.held, section.masked, section.size = secret, [], {}, 0
        if not section.open:
            self._section = None

    def _emit(self, line: str) -> None:
        section = self._section
        if section is None:
            self._out.append(line)
        elif section.secret is None:
            section.held.append(line)
            section.size += len(line)
            if section.size > BLOCK_CAP:
                self._decide(True)
        else:
            self._out.append(line)


def _has_content(text: str, start: int, end: int) -> bool:
    """Whether a line in text[start:end] (whole lines) is not blank, as `_line` reads it."""
    while end > start:
        line_start = text.rfind("\n", start, end - 1) + 1 or start
        if text[line_start:end].rstrip("\r\n").lstrip(" "):
            return True
        end = line_start
    return False


def _masked_pair(pair: re.Match[str]) -> str:
    quote = pair["q"] + '"'
    return f"{quote}{pair['key']}{quote}:{quote}{placeholder(SECRET_DATA)}{quote}"


def _mask_entry(line: str, entry: _Entry | None) -> str:
    """A line of a secret data mapping: its value masked, or all of it if it has no key."""
    if entry is None:
        return _mask_content(line, SECRET_DATA)
    _, _, value, start, end = entry
    return _replace_value(line, start, end, SECRET_DATA) if value else line


SecretKind = Callable[[Any], bool]


def _mask_json_text(text: str, data_keys: frozenset[str], secret_kind: SecretKind) -> str | None:
    """A line holding one JSON document with every Secret's data values masked.

    None when the text is not JSON; the caller then masks it whole. The document is
    printed again compactly, the way kubectl writes the last-applied annotation.
    """
    body = text.strip()
    try:
        document = json.loads(body)
    except ValueError:
        return None
    masked = _mask_json_node(document, data_keys, secret_kind)
    start = text.index(body[0])
    printed = json.dumps(masked, ensure_ascii=False, separators=(",", ":"))
    return text[:start] + printed + text[start + len(body) :]


def _mask_json_node(node: Any, data_keys: frozenset[str], secret_kind: SecretKind) -> Any:
    if isinstance(node, list):
        return [_mask_json_node(item, data_keys, secret_kind) for item in node]
    if not isinstance(node, dict):
        return node
    secret = secret_kind(node.get("kind"))
    return {
        key: (
            {k: placeholder(SECRET_DATA) for k in value}
            if key in data_keys and isinstance(value, dict) and secret
            else _mask_json_node(value, data_keys, secret_kind)
        )
        for key, value in node.items()
    }


# --------------------------------------------------------------------------- the masker


def _open_key_start(text: str) -> int:
    """Where an unfinished private key block starts in `text`, or -1 if none is open."""
    begin = text.rfind("-----BEGIN ")
    if begin < 0:
        return -1
    line_end = text.find("\n", begin)
    header = text[begin : line_end if line_end >= 0 else len(text)]
    if "PRIVATE KEY" not in header or text.find("-----END ", begin) >= 0:
        return -1
    return text.rfind("\n", 0, begin) + 1


def _base64_run_start(text: str) -> int:
    """Where a run of base64-only lines at the end of `text` starts (len(text) if none)."""
    start = len(text)
    while start > 0:
        line_start = text.rfind("\n", 0, start - 1) + 1
        if not B64_LINE.fullmatch(text, line_start, start - 1):
            break
        start = line_start
    return start


def _mask_lines(text: str, name: str) -> str:
    return "".join(_mask_content(line, name) for line in text.splitlines(keepends=True))


class Masker:
    """A stateful bytes-to-bytes redactor for one stream of kubectl output.

    `mode` is "text" (structure rules, detectors, literals, base64), "structure" (the same,
    knowing that every object in the stream is a Secret, so nothing waits for `kind:`) or
    "whole" (every non-empty line becomes a placeholder: template output of secrets) or
    "columns" (a custom-columns table of Secrets: `columns` says which cells to mask).

    Example::

        masker = Masker(default_detectors(), literals=[minted_token])
        for chunk in child_output:
            stdout.write(masker.feed(chunk))
        stdout.write(masker.flush())
    """

    def __init__(
        self,
        detectors: Mapping[str, Detector],
        literals: Sequence[str] = (),
        mode: str = "text",
        structure: StructureRules | None = None,
        *,
        digests: Collection[str] = (),
        sections: bool = True,
        columns: list[tuple[str, bool]] | None = None,
    ) -> None:
        """`digests` (see `literal_digests`) hide values like `literals` do, unknown to it.
        `sections=False`: the output is no YAML or JSON (`describe`), so `data:` is no data
        mapping."""
        if mode not in MODES:
            raise ValueError(f"unknown masking mode {mode!r} (one of {', '.join(MODES)})")
        rules = structure if structure is not None else default_rules().structure
        self._mode = mode
        self._rules = rules
        self._decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self._scanner = _Scanner(detectors, literals, rules, digests)
        self._structure = _Structure(rules, all_secret=mode == "structure", sections=sections)
        self._pieces: list[str] = []  # the current partial line
        self._partial_size = 0
        self._held = ""  # complete lines of an unfinished PEM block or base64 run
        self._in_key = False  # a key block was given up on: mask until its END line
        self._continuing = False  # the current line was cut: its rest skips the structure rules
        self._swallow = False  # the current line's rest belongs to a masked value: drop it
        self._line_open = False  # "whole" mode: this line's placeholder is already out
        self._json: JsonStream | None = None  # an overlong JSON line, read as it streams
        # "columns" mode: a custom-columns table of Secrets (see masking/columns.py)
        self._table = Columns(columns or [], lambda: placeholder(COMMAND_OUTPUT))

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def buffered(self) -> int:
        """Characters held back right now (partial line, unfinished block, undecided section)."""
        return self._partial_size + len(self._held) + self._structure.held

    def feed(self, chunk: bytes) -> bytes:
        """Mask the next chunk of output; returns what can be shown now."""
        return self._run(self._decoder.decode(chunk), final=False)

    def flush(self) -> bytes:
        """At end of stream: mask and return everything still held back."""
        return self._run(self._decoder.decode(b"", final=True), final=True)

    def mask_text(self, text: str) -> str:
        """Mask a whole string through this masker (then it is at end of stream)."""
        return self._process(text, final=False) + self._process("", final=True)

    def _run(self, text: str, final: bool) -> bytes:
        return self._process(text, final).encode("utf-8", "surrogateescape")

    def _process(self, text: str, final: bool) -> str:
        if self._mode == "whole":
            return self._whole(text)
        if self._mode == "columns":
            shown = self._table.feed(text) + (self._table.flush() if final else "")
            return self._scanner.mask(shown)
        if len(text) > LINE_CAP:
            # in pieces, so that a line past LINE_CAP is never read whole
            last = len(text) - 1
            return "".join(
                self._process(text[at : at + LINE_CAP], final and at + LINE_CAP > last)
                for at in range(0, len(text), LINE_CAP)
            )
        before = ""
        if self._json is not None:
            newline = text.find("\n")
            if newline < 0 and not final:
                return self._json.feed(text)
            before = self._json.feed(text if newline < 0 else text[:newline]) + self._json.finish()
            self._json = None
            text = "" if newline < 0 else text[newline:]
        return before + self._lines(text, final)

    def _lines(self, text: str, final: bool) -> str:
        if self._swallow:
            newline = text.find("\n")
            if newline < 0 and not final:
                return ""
            text, self._swallow = ("" if newline < 0 else text[newline:]), False
        newline = text.rfind("\n")
        if newline < 0:
            self._pieces.append(text)
            self._partial_size += len(text)
            complete = ""
        else:
            complete = "".join(self._pieces) + text[: newline + 1]
            rest = text[newline + 1 :]
            self._pieces, self._partial_size = ([rest] if rest else []), len(rest)
        lines = self._structured(complete)
        if final:
            return self._finish(lines)
        out = self._scanner.mask(self._hold_blocks(lines))
        if self._partial_size > LINE_CAP:
            out += self._to_json_stream() if self._json_line_open() else self._cut_line()
        return out

    def _json_line_open(self) -> bool:
        """Whether the overlong partial line is a JSON document (from its first character)."""
        if self._continuing:
            return False
        for piece in self._pieces:
            start = piece.lstrip()
            if start:
                return start[0] in "{["
        return False

    def _to_json_stream(self) -> str:
        """Read the rest of an overlong JSON line with a JsonStream, not by cutting it."""
        line = "".join(self._pieces)
        self._pieces, self._partial_size = [], 0
        before = self._scanner.mask(self._hold_blocks(self._structure.release()))
        if self._held:
            before += self._scanner.mask(self._release_held())
        rules = self._rules
        self._json = JsonStream(
            placeholder=placeholder,
            data_keys=rules.data_keys,
            credential_keys=rules.credential_keys,
            secret_name=functools.partial(_names_secret, rules.secret_name),
            secret_kind=self._structure._secret_kind,
            embedded=lambda text: _mask_json_text(
                text, rules.data_keys, lambda kind: not isinstance(kind, str)
                or kind in rules.secret_kinds
            ),
            scan=self._scanner.mask,
            cap=BLOCK_CAP,
            all_secret=self._mode == "structure",
        )
        return before + self._json.feed(line)

    def _structured(self, complete: str) -> list[str]:
        if not complete:
            return []
        out: list[str] = []
        if self._continuing:
            first = complete.find("\n") + 1
            out.append(complete[:first])
            complete = complete[first:]
            self._continuing = False
        out.extend(self._structure.push(complete))
        return out

    def _hold_blocks(self, lines: list[str]) -> str:
        """Text ready to scan; an unfinished PEM block or base64 run at its end stays held."""
        text = self._held + "".join(lines)
        self._held = ""
        given_up = ""
        if self._in_key:
            given_up, text = self._rest_of_key(text)
        cut = _open_key_start(text)
        if cut < 0:
            cut = _base64_run_start(text)
        ready, self._held = text[:cut], text[cut:]
        if len(self._held) > BLOCK_CAP:
            ready += self._release_held()
        return given_up + ready

    def _rest_of_key(self, text: str) -> tuple[str, str]:
        """After giving up on a key block: mask up to its END line; (masked, rest)."""
        end = text.find("-----END ")
        stop = len(text) if end < 0 else (text.find("\n", end) + 1 or len(text))
        self._in_key = end < 0
        return _mask_lines(text[:stop], UNFINISHED_KEY), text[stop:]

    def _release_held(self) -> str:
        """Give up on a held block: a key block or a blob too long to read whole is masked."""
        held, self._held = self._held, ""
        if _open_key_start(held) >= 0:
            self._in_key = True
            return _mask_lines(held, UNFINISHED_KEY)
        return _mask_lines(held, OVERLONG_BASE64) if len(held) > BLOCK_CAP else held

    def _cut_line(self) -> str:
        """Emit most of an overlong partial line, keeping TAIL characters back."""
        line = "".join(self._pieces)
        before = self._scanner.mask(self._release_held()) if self._held else ""
        if not self._continuing:
            self._continuing = True
            lines = self._structure.push(line) + self._structure.release()
            before += self._scanner.mask("".join(lines[:-1]))
            if lines[-1] != line:
                # the structure rules masked this line's value: the rest of it is secret too
                self._pieces, self._partial_size, self._swallow = [], 0, True
                self._continuing = False
                return before + lines[-1]
        spans = self._scanner.spans(line)
        cut = len(line) - TAIL
        for start, end, _ in spans:
            if start < cut < end:
                cut = start
        rest = line[cut:]
        self._pieces, self._partial_size = [rest], len(rest)
        return before + _splice(line[:cut], [s for s in spans if s[1] <= cut])

    def _finish(self, lines: list[str]) -> str:
        line = "".join(self._pieces)
        self._pieces, self._partial_size = [], 0
        if line and not self._continuing:
            lines = lines + self._structure.push(line)
        elif line:
            lines = lines + [line]
        self._continuing = False
        text = self._hold_blocks(lines + self._structure.release())
        held, self._held = self._held, ""
        begin = _open_key_start(held)
        if begin < 0:
            return self._scanner.mask(text + held)
        # the stream ended inside a key block
        return self._scanner.mask(text + held[:begin]) + _mask_lines(held[begin:], UNFINISHED_KEY)

    def _whole(self, text: str) -> str:
        out: list[str] = []
        for index, piece in enumerate(text.split("\n")):
            if index:
                out.append("\n")
                self._line_open = False
            if piece and not self._line_open:
                out.append(placeholder(COMMAND_OUTPUT))
                self._line_open = True
        return "".join(out)


def _names_only(call: Any, output: str) -> bool:
    """Whether the call's template (`-o jsonpath=…`, `--template`) prints only names."""
    spelled = call.flag("output") or ""
    body = spelled.partition("=")[2] if "=" in spelled else (call.flag("template") or "")
    return names_only(output or "go-template", body)


def _custom_columns(call: Any) -> list[tuple[str, bool]] | None:
    """The columns of `-o custom-columns=SPEC` with a header (else None: masked whole)."""
    if call.flag("no-headers") not in (None, "false"):
        return None
    columns = custom_columns((call.flag("output") or "").partition("=")[2])
    return [(title, not safe) for title, safe in columns] if columns is not None else None


def mask_text(
    text: str,
    detectors: Mapping[str, Detector] | None = None,
    literals: Sequence[str] = (),
    mode: str = "text",
    *,
    digests: Collection[str] = (),
) -> str:
    """Mask a whole string (the bundled detectors when `detectors` is None)."""
    chosen = default_detectors() if detectors is None else detectors
    return Masker(chosen, literals, mode, digests=digests).mask_text(text)


# --------------------------------------------------------------------------- command-aware


def masker_for(
    argv: Sequence[str],
    detectors: Mapping[str, Detector],
    literals: Sequence[str] = (),
    *,
    digests: Collection[str] = (),
) -> Masker:
    """The masker for the output of `kubectl ARGV` (argv without the program name).

    Read with the normalizer, so every spelling of a type and of `-o` counts. When the call
    names Secrets (also through a `--raw` API path), a template-like output (-o jsonpath=...,
    go-template, custom-columns, --template) prints bare secret values, so every line is
    masked whole, and any other output is read as Secrets ("structure"); `config view` with a
    template is masked whole too. A call guardctl did not fully understand is read as naming
    Secrets: each guess errs towards masking more.
    """
    from guardctl.firewall.normalize import normalize
    from guardctl.model import SimpleCommand

    call = normalize(SimpleCommand(argv=("kubectl", *argv)))
    output = (call.flag("output") or ("go-template" if call.has_flag("template") else "")).split(
        "=", 1
    )[0]
    template = output in _TEMPLATE_OUTPUTS or call.has_flag("template")
    secrets = bool(call.problems) or any(r.resource in _SECRET_RESOURCES for r in call.resources)
    table = _custom_columns(call) if secrets and output == "custom-columns" else None
    if table is not None:
        return Masker(detectors, literals, "columns", digests=digests, columns=table)
    if template and secrets and not call.problems and _names_only(call, output):
        template = False  # it prints what names the Secrets, not what they hold
    if template and (secrets or call.verb == "config view"):
        return Masker(detectors, literals, "whole", digests=digests)
    return Masker(
        detectors,
        literals,
        "structure" if secrets else "text",
        digests=digests,
        sections=secrets or call.verb != "describe",
    )
