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

Memory stays bounded: the masker holds back the current partial line (up to LINE_CAP
characters, then it cuts, keeping a TAIL), an unfinished multi-line block (a PEM block or a
wrapped base64 blob, up to BLOCK_CAP, then masks it) and an object's data section until its
``kind`` is known (up to BLOCK_CAP, then treats it as a Secret). Whatever cannot be read
whole is masked: this is a security tool, so doubt fails closed.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from guardctl.detectors import (
    Detector,
    StructureRules,
    default_detectors,
    default_rules,
    shannon_entropy,
)

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
MODES = ("text", "structure", "whole")
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

# greedy, so each match is a whole run of base64 characters
_B64_TOKEN = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")
# base64 wrapped over lines: full lines, then a last line that may be short but padded
_B64_RUN = re.compile(
    r"(?m)^[ \t]*[A-Za-z0-9+/]{20,}\r?\n"
    r"(?:[ \t]*[A-Za-z0-9+/]{16,}={0,2}\r?$\n?|[ \t]*[A-Za-z0-9+/]{1,15}={1,2}\r?$\n?)+"
)
_B64_LINE = re.compile(r"[ \t]*[A-Za-z0-9+/]{20,}={0,2}\r?")
_KEY_BEFORE = re.compile(r"([A-Za-z0-9_.-]+)[\"']?\s*[:=]\s*[\"']?$")
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


def _literal_pattern(literals: Sequence[str]) -> re.Pattern[str] | None:
    variants: set[str] = set()
    for literal in literals:
        if len(literal) >= MIN_LITERAL:
            variants |= _literal_variants(literal)
    if not variants:
        return None
    # longest first, so a value wins over its own prefix
    return re.compile("|".join(re.escape(v) for v in sorted(variants, key=len, reverse=True)))


def _byte_entropy(raw: bytes) -> float:
    # latin-1 maps each byte to one character, so this is the entropy per byte
    return shannon_entropy(raw.decode("latin-1"))


def _b64decode(blob: str) -> bytes | None:
    compact = "".join(blob.split())
    if len(compact) % 4 == 1:
        return None
    try:
        return base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _keyword_lines(text: str, lowered: str, keywords: Sequence[str]) -> list[tuple[int, int]]:
    """(start, end) of the stretches of `text` whose lines hold a keyword, in order.

    A one-line detector only runs there: a few substring searches in C are much cheaper
    than a regex over the whole text. Neighbouring lines form one stretch, and past
    _MAX_REGIONS stretches one pass over everything is cheaper.
    """
    lines: set[tuple[int, int]] = set()
    for keyword in keywords:
        at = lowered.find(keyword)
        while at >= 0:
            end = text.find("\n", at)
            end = len(text) if end < 0 else end
            lines.add((text.rfind("\n", 0, at) + 1, end))
            at = lowered.find(keyword, end)
    regions: list[tuple[int, int]] = []
    for start, end in sorted(lines):
        if regions and start <= regions[-1][1] + 1:
            regions[-1] = (regions[-1][0], max(end, regions[-1][1]))
        else:
            regions.append((start, end))
    return regions if len(regions) <= _MAX_REGIONS else [(0, len(text))]


class _Scanner:
    """Finds detector matches, literal values and base64 blobs that hide either."""

    def __init__(
        self, detectors: Mapping[str, Detector], literals: Sequence[str], rules: StructureRules
    ) -> None:
        everywhere = [d for d in detectors.values() if d.multiline or not d.keywords]
        self._everywhere = tuple(everywhere)
        self._by_line = tuple(d for d in detectors.values() if d not in everywhere)
        self._literals = _literal_pattern(literals)
        self._rules = rules
        # on equal spans the file's order decides: vendor formats before generic rules
        self._rank = {name: index for index, name in enumerate(detectors)}

    def spans(self, text: str, depth: int = 0) -> list[Span]:
        lowered = text.lower()
        found: list[Span] = []
        for detector in self._everywhere:
            if detector.may_match(lowered):
                found.extend((s, e, detector.name) for s, e in detector.find(text))
        # lower() keeps offsets unless a character changes length (İ); then search it all
        same = len(lowered) == len(text)
        for detector in self._by_line:
            regions = _keyword_lines(text, lowered, detector.keywords) if same else [(0, len(text))]
            for first, last in regions:
                found.extend((s, e, detector.name) for s, e in detector.find(text, first, last))
        if self._literals is not None:
            found.extend((m.start(), m.end(), LITERAL) for m in self._literals.finditer(text))
        if depth < BASE64_DEPTH:
            found.extend(self._base64_spans(text, _merge(found), depth))
        return _merge(found, self._rank)

    def mask(self, text: str) -> str:
        return _splice(text, self.spans(text)) if text else text

    def _base64_spans(self, text: str, known: list[Span], depth: int) -> Iterable[Span]:
        candidates = [m.span() for m in _B64_RUN.finditer(text)]
        candidates += [m.span() for m in _B64_TOKEN.finditer(text)]
        for start, end in candidates:
            if any(s < end and start < e for s, e, _ in known):
                continue
            name = self._decoded_secret(text, start, end, depth)
            if name is not None:
                yield start, end, name

    def _decoded_secret(self, text: str, start: int, end: int, depth: int) -> str | None:
        """The name of what the base64 blob text[start:end] hides, or None."""
        raw = _b64decode(text[start:end])
        if raw is None:
            return None
        decoded = raw.decode("utf-8", "replace")
        # mostly text (a cut-off multi-byte character or two is fine) or binary
        if decoded.count("\ufffd") * 20 > len(decoded):
            return BINARY if self._binary_is_secret(raw, text, start) else None
        inner = self.spans(decoded, depth + 1)
        if not inner:
            return None
        name = inner[0][2].removesuffix("+base64")
        return f"{name}+base64"

    def _binary_is_secret(self, raw: bytes, text: str, start: int) -> bool:
        """Random-looking bytes under a secret-looking key (`encryption-key: <base64>`)."""
        line_start = text.rfind("\n", 0, start) + 1
        key = _KEY_BEFORE.search(text, line_start, start)
        if key is None:
            return False
        name = key.group(1)
        rules = self._rules
        named = name.lower() in rules.credential_keys or rules.secret_name.search(name)
        return bool(named) and len(raw) >= 16 and _byte_entropy(raw) >= BINARY_ENTROPY


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
    if value in _NOT_A_VALUE:
        return line
    return line[:start] + placeholder(name) + line[end:]


def _mask_content(line: str, name: str) -> str:
    """A whole line's content replaced, its indentation and line break kept."""
    body = line.rstrip("\r\n")
    stripped = body.lstrip(" ")
    if not stripped:
        return line
    return line[: len(body) - len(stripped)] + placeholder(name) + line[len(body) :]


@dataclass(slots=True)
class _Entry:
    """One key/value line: the key, where its value sits in the line, the key's column."""

    key: str
    level: int
    value: str
    start: int  # of the value in the line
    end: int


def _entry(line: str, lead: int) -> _Entry | None:
    """Read `key: value` (YAML) or `"key": value` (JSON) from a line; None for other lines."""
    body = line.rstrip(" \t\r\n")
    if body.startswith('"', lead):
        match = _JSON_KEY.match(body, lead)
        if match is None:
            return None
        return _Entry(match["key"], lead, body[match.end() :], match.end(), len(body))
    # string methods, not a regex: this runs for nearly every line of YAML output
    level = lead + 2 if body.startswith("- ", lead) else lead
    colon = body.find(": ", level)
    if colon < 0:
        if not body.endswith(":"):
            return None
        colon = len(body) - 1
    key = body[level:colon]
    if not key or key[0] in _NOT_A_KEY_START:
        return None
    value = body[colon + 1 :].lstrip(" ")
    return _Entry(key.strip("\"'"), level, value, len(body) - len(value), len(body))


def _scalar(value: str) -> bool:
    """A value that is a scalar on this line (not a nested mapping, list or block header)."""
    return value.rstrip(",") not in _NOT_A_VALUE and value[:1] not in "{[" and not _is_block(value)


def _is_block(value: str) -> bool:
    return value[:1] in ("|", ">") and _BLOCK_HEADER.fullmatch(value) is not None


@dataclass
class _Section:
    """The `data:`/`stringData:` mapping of one object, held until its kind is known."""

    level: int
    secret: bool | None  # None: kind not known yet, lines are held
    open: bool = True  # still inside the mapping
    held: list[str] = field(default_factory=list)
    masked: dict[int, str] = field(default_factory=dict)  # held index -> the line masked
    size: int = 0


@dataclass
class _Block:
    """A YAML block scalar (`key: |`): its key's column and what to do with its lines."""

    level: int
    mask: str | None = None  # the mask name when every content line is secret


class _Structure:
    """Line-by-line reading of YAML, JSON and describe output, masking what structure says.

    `push(line)` takes one complete line (with its line break) and returns the lines ready
    to go on, in order; lines of a data section wait until its object's kind is known.
    """

    def __init__(self, rules: StructureRules, all_secret: bool) -> None:
        self._rules = rules
        self._all_secret = all_secret
        self._kinds: list[tuple[int, str]] = []  # (column, kind) of the enclosing objects
        self._section: _Section | None = None
        self._block: _Block | None = None
        self._env_level: int | None = None  # column of `name: SECRET_NAME` awaiting `value:`
        # a line that may hold a Secret as JSON: `"Secret` and `"data"` in any escaping
        kinds = "|".join(re.escape(k) for k in sorted(rules.secret_kinds))
        self._kind_needle = re.compile(f'"(?:{kinds})')
        keys = "|".join(re.escape(k) for k in sorted(rules.data_keys))
        self._data_needle = re.compile(rf'"(?:{keys})\\*"')
        self._data_object = re.compile(
            rf'(?P<q>\\*)"(?:{keys})(?P=q)"\s*:\s*\{{(?P<body>[^{{}}]*)\}}'
        )
        self._describe_secret = all_secret
        self._describe_data = False
        self._previous = ""
        self._out: list[str] = []

    @property
    def held(self) -> int:
        return self._section.size if self._section else 0

    def push(self, *lines: str) -> list[str]:
        for line in lines:
            self._line(line)
        out, self._out = self._out, []
        return out

    def release(self) -> list[str]:
        """Decide every open question the safe way (mask) and return what was held."""
        if self._section is not None and self._section.secret is None:
            self._decide(True)
        out, self._out = self._out, []
        return out

    # -- one line

    def _line(self, line: str) -> None:
        body = line.rstrip("\r\n")
        stripped = body.lstrip(" ")
        if not stripped:
            self._describe_data = False
            self._emit(line)
            return
        lead = len(body) - len(stripped)
        if self._block is not None:
            if lead > self._block.level:
                self._emit(self._block_line(line, self._block))
                return
            self._block = None
        if stripped.startswith("---") and lead == 0:
            self._end_objects(-1)
            self._emit(line)
            return
        section = self._section
        if section is not None or self._env_level is not None or self._kinds:
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
        entry = _entry(line.rstrip("\r\n"), lead)
        if entry is not None and _is_block(entry.value):
            self._block = _Block(entry.level, mask=SECRET_DATA)
            self._emit(line)
        elif section.secret is None:
            section.masked[len(section.held)] = _mask_entry(line, entry)
            self._emit(line)
        else:
            self._emit(_mask_entry(line, entry) if section.secret else line)

    def _keyed_line(self, line: str, entry: _Entry) -> str:
        rules = self._rules
        key, value = entry.key, entry.value
        if key == "kind" and value:
            self._kind(entry.level, value.strip("\"',"))
        elif key in rules.data_keys and value.rstrip(",") in ("", "{"):
            self._open_section(entry.level)
        elif _is_block(value):
            self._block = self._block_for(entry)
        elif self._describe_data and self._describe_secret and entry.level == 0:
            # `kubectl describe secret` prints sizes; anything else there is a value
            if not _DESCRIBE_SIZE.fullmatch(value):
                return _replace_value(line, entry.start, entry.end, SECRET_DATA)
        elif key.lower() in rules.credential_keys and _scalar(value):
            return _replace_value(line, entry.start, entry.end, CREDENTIAL)
        elif key == "name" and rules.secret_name.search(value.strip("\"',")):
            self._env_level = entry.level
        elif key == "value" and self._env_level == entry.level:
            self._env_level = None
            return _replace_value(line, entry.start, entry.end, SECRET_ENV)
        elif key == "Type" and entry.level == 0:
            self._describe_secret = True
        elif key == "Name" and entry.level == 0:
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
        if not (self._kind_needle.search(line) and self._data_needle.search(line)):
            return line
        value = entry.value.rstrip(",") if entry else ""
        if entry is not None and value.startswith('"{'):
            try:
                masked = self._json_line(json.loads(value))
            except (ValueError, TypeError):
                masked = None
            if masked is not None:
                quoted = json.dumps(masked, ensure_ascii=False)
                return line[: entry.start] + quoted + line[entry.start + len(value) :]
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

    def _block_for(self, entry: _Entry) -> _Block:
        if entry.key.lower() in self._rules.credential_keys:
            return _Block(entry.level, mask=CREDENTIAL)
        if entry.key == "value" and self._env_level == entry.level:
            return _Block(entry.level, mask=SECRET_ENV)
        return _Block(entry.level)

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


def _masked_pair(pair: re.Match[str]) -> str:
    quote = pair["q"] + '"'
    return f"{quote}{pair['key']}{quote}:{quote}{placeholder(SECRET_DATA)}{quote}"


def _mask_entry(line: str, entry: _Entry | None) -> str:
    """A line of a secret data mapping: its value masked, or all of it if it has no key."""
    if entry is None or not entry.value:
        return _mask_content(line, SECRET_DATA) if entry is None else line
    return _replace_value(line, entry.start, entry.end, SECRET_DATA)


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
        if not _B64_LINE.fullmatch(text, line_start, start - 1):
            break
        start = line_start
    return start


def _mask_lines(text: str, name: str) -> str:
    return "".join(_mask_content(line, name) for line in text.splitlines(keepends=True))


class Masker:
    """A stateful bytes-to-bytes redactor for one stream of kubectl output.

    `mode` is "text" (structure rules, detectors, literals, base64), "structure" (the same,
    knowing that every object in the stream is a Secret, so nothing waits for `kind:`) or
    "whole" (every non-empty line becomes a placeholder: template output of secrets).

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
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown masking mode {mode!r} (one of {', '.join(MODES)})")
        rules = structure if structure is not None else default_rules().structure
        self._mode = mode
        self._decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self._scanner = _Scanner(detectors, literals, rules)
        self._structure = _Structure(rules, all_secret=mode == "structure")
        self._pieces: list[str] = []  # the current partial line
        self._partial_size = 0
        self._held = ""  # complete lines of an unfinished PEM block or base64 run
        self._in_key = False  # a key block was given up on: mask until its END line
        self._continuing = False  # the current line was cut: its rest skips the structure rules
        self._swallow = False  # the current line's rest belongs to a masked value: drop it
        self._line_open = False  # "whole" mode: this line's placeholder is already out

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
            out += self._cut_line()
        return out

    def _structured(self, complete: str) -> list[str]:
        if not complete:
            return []
        lines = complete.split("\n")[:-1]
        out: list[str] = []
        if self._continuing:
            out.append(lines.pop(0) + "\n")
            self._continuing = False
        out.extend(self._structure.push(*(line + "\n" for line in lines)))
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


def mask_text(
    text: str,
    detectors: Mapping[str, Detector] | None = None,
    literals: Sequence[str] = (),
    mode: str = "text",
) -> str:
    """Mask a whole string (the bundled detectors when `detectors` is None)."""
    chosen = default_detectors() if detectors is None else detectors
    return Masker(chosen, literals, mode).mask_text(text)


# --------------------------------------------------------------------------- command-aware


def masker_for(
    argv: Sequence[str],
    detectors: Mapping[str, Detector],
    literals: Sequence[str] = (),
) -> Masker:
    """The masker for the output of `kubectl ARGV` (argv without the program name).

    Read with the normalizer, so every spelling of a type and of `-o` counts. When the call
    names Secrets (also through a `--raw` API path), a template-like output (-o jsonpath=...,
    go-template, custom-columns, --template) prints bare secret values, so every line is
    masked whole, and any other output is read as Secrets ("structure"); `config view` with a
    template is masked whole too. A call guardctl did not fully understand is read as naming
    Secrets: each guess errs towards masking more.
    """
    from guardctl.model import SimpleCommand
    from guardctl.normalize import normalize

    call = normalize(SimpleCommand(argv=("kubectl", *argv)))
    output = (call.flag("output") or ("go-template" if call.has_flag("template") else "")).split(
        "=", 1
    )[0]
    template = output in _TEMPLATE_OUTPUTS or call.has_flag("template")
    secrets = bool(call.problems) or any(r.resource in _SECRET_RESOURCES for r in call.resources)
    if template and (secrets or call.verb == "config view"):
        return Masker(detectors, literals, "whole")
    return Masker(detectors, literals, "structure" if secrets else "text")
