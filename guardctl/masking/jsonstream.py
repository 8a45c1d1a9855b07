"""Masking one JSON document of any length, a piece at a time: `kubectl get --raw` of a
Secret list is a single line of megabytes.

The line-based masker reads a JSON line whole; past `mask.LINE_CAP` it hands the rest of the
line here instead of cutting it. This reads the document token by token and applies the
structure rules to it as it goes: the values of a Secret's `data`/`stringData`, values under
credential keys, the `value` of an env entry whose `name` looks secret, and a Secret written
as JSON inside a string (the last-applied annotation). Everything else passes unchanged
through the detectors (`scan`), in batches cut between two members of a mapping or list, so
that a `"key": "value"` pair is never split.

kubectl writes an object's keys in order, so `data` comes before `kind`: from the start of a
data mapping whose object's kind is not known yet, the output is held (both as it is and
with the data masked) until the kind is read, and past `cap` characters it is treated as a
Secret. A string longer than `cap` is never held: it is masked as it streams by. Memory
stays within a few times `cap`, whatever the length of the document.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

# one JSON token at a position: a whole string, a punctuation mark, a bare word, spaces
# (the unrolled loop: `"(?:[^"\\]|\\.)*"` would make `re` take each character in turn)
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_WORD = re.compile(r'[^\s{}\[\]:,"]+')
_SPACE = re.compile(r"\s+")
# the end of a string that began earlier: its first unescaped quote
_STRING_END = re.compile(r'[^"\\]*(?:\\.[^"\\]*)*"')
# a string without escapes or control characters: its text is what is between its quotes
_PLAIN_STRING = re.compile(r'"[^"\\\x00-\x1f]*"')
# how much output the detectors get at a time (cut between members)
SCAN_BATCH = 64 * 1024
# the key a Kubernetes object keeps the last applied copy of itself in (a JSON string)
_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


class _Frame:
    """One open object or array."""

    __slots__ = ("array", "key", "expect_key", "secret", "name", "data", "owner")

    def __init__(self, array: bool, data: bool = False, owner: _Frame | None = None) -> None:
        self.array = array
        self.key: str | None = None  # the key whose value comes next
        self.expect_key = not array
        self.secret: bool | None = None  # whether its data is secret, once its kind is read
        self.name = ""  # the object's `name` (an env entry's)
        self.data = data  # a data mapping: its string values are data values
        self.owner = owner  # for a data mapping: the object it belongs to


class _Hold:
    """Output held while a data mapping's owner's kind is unknown: as it is, and masked."""

    __slots__ = ("owner", "plain", "masked", "size")

    def __init__(self, owner: _Frame) -> None:
        self.owner = owner
        self.plain: list[str] = []
        self.masked: list[str] = []
        self.size = 0


class JsonStream:
    """A streaming masker for one JSON document (see the module docstring).

    `placeholder(name)` makes a mask, `secret_name` tells env names that hold secrets,
    `credential_keys` keys whose value is a credential, `secret_kind(kind)` whether objects
    of a kind (None: unknown) have secret data, `embedded(text)` masks a JSON document held
    in a string (None: not JSON), `scan(text)` runs the detectors.
    """

    def __init__(
        self,
        *,
        placeholder: Callable[[str], str],
        data_keys: frozenset[str],
        credential_keys: frozenset[str],
        secret_name: Callable[[str], bool],
        secret_kind: Callable[[Any], bool],
        embedded: Callable[[str], str | None],
        scan: Callable[[str], str],
        cap: int,
        all_secret: bool = False,
    ) -> None:
        self._placeholder = placeholder
        self._data_keys = data_keys
        self._credential_keys = credential_keys
        self._secret_name = secret_name
        self._secret_kind = secret_kind
        self._embedded = embedded
        self._scan = scan
        self._cap = cap
        self._all_secret = all_secret  # every object is a Secret: nothing waits for a kind
        self._stack: list[_Frame] = []
        self._pending = ""  # the start of a token cut by the end of a piece
        self._skipping: str | None = None  # inside an overlong string: its mask's name
        self._escaped = False  # ... and the last character skipped was a backslash
        self._hold: _Hold | None = None
        self._batch: list[str] = []
        self._batch_size = 0
        self._out: list[str] = []

    def feed(self, text: str) -> str:
        """Mask the next piece of the document; returns what can be shown now."""
        self._read(text, final=False)
        return self._take()

    def finish(self) -> str:
        """At the document's end (its line break): everything still held, masked."""
        self._read("", final=True)
        if self._hold is not None:
            self._release(True)  # the document ended before its kind
        self._flush_batch()
        return self._take()

    # -- reading

    def _read(self, text: str, final: bool) -> None:
        if self._skipping is not None:
            text = self._skip(text)
        text = self._pending + text
        self._pending = ""
        pos, size = 0, len(text)
        while pos < size:
            char = text[pos]
            if char == '"':
                match = _STRING.match(text, pos)
                if match is None:
                    if final:  # an unterminated string: kubectl's output broke off
                        self._string(text[pos:] + '"')
                        return
                    self._keep_pending(text[pos:])
                    return
                self._string(match.group())
                pos = match.end()
            elif char in "{[":
                self._open(char == "[")
                self._emit(char)
                pos += 1
            elif char in "}]":
                self._emit(char)
                self._close()
                pos += 1
            elif char == ":":
                self._emit(char)
                pos += 1
            elif char == ",":
                top = self._stack[-1] if self._stack else None
                if top is not None and not top.array:
                    top.expect_key, top.key = True, None
                self._emit(char)
                self._cut_batch()
                pos += 1
            elif char.isspace():
                end = _SPACE.match(text, pos)
                assert end is not None
                self._emit(end.group())
                pos = end.end()
            else:
                word = _WORD.match(text, pos)
                assert word is not None
                if word.end() == size and not final and word.end() - pos <= self._cap:
                    self._pending = word.group()  # `tru` of a `true` still coming
                    return
                self._value_read()
                self._emit(word.group())
                pos = word.end()

    def _keep_pending(self, start: str) -> None:
        """Keep the start of a string for the next piece; past `cap`, mask it instead."""
        if len(start) <= self._cap:
            self._pending = start
            return
        # an overlong string: its value is masked, whatever it is, as it streams by
        self._emit(f'"{self._placeholder(self._overlong_name())}')
        self._value_read()
        self._skipping = "string"
        self._escaped = False
        rest = self._skip(start[1:])
        if rest:
            self._read(rest, final=False)

    def _skip(self, text: str) -> str:
        """Drop an overlong string's characters up to its closing quote; the text after it."""
        pos = 0
        if self._escaped and text:
            pos, self._escaped = 1, False
        end = _STRING_END.match(text, pos)
        if end is None:
            rest = text[pos:]
            self._escaped = (len(rest) - len(rest.rstrip("\\"))) % 2 == 1
            return ""
        self._skipping = None
        self._emit('"')
        return text[end.end() :]

    def _overlong_name(self) -> str:
        top = self._top()
        if top is not None and top.data:
            return "secret-data"
        return "overlong-value"

    # -- structure

    def _top(self) -> _Frame | None:
        return self._stack[-1] if self._stack else None

    def _open(self, array: bool) -> None:
        top = self._top()
        data = top is not None and not top.array and not array and top.key in self._data_keys
        frame = _Frame(array, data=data, owner=top if data else None)
        self._value_read()
        self._stack.append(frame)
        if data and top is not None and self._secrecy(top) is None:
            self._start_hold(top)

    def _secrecy(self, owner: _Frame | None) -> bool | None:
        """Whether an object's data is secret: None while its kind is still to come."""
        if self._all_secret or owner is None:
            return True
        return owner.secret

    def _close(self) -> None:
        frame = self._stack.pop() if self._stack else None
        hold = self._hold
        if hold is not None and frame is hold.owner:
            self._release(True)  # its kind was never given: unknown counts as secret

    def _value_read(self) -> None:
        top = self._top()
        if top is not None and not top.array:
            top.expect_key = False

    def _string(self, token: str) -> None:
        # (the frame looked up and set here, not by _top and _value_read: one string in two
        # is a key, and this runs for each)
        top = self._stack[-1] if self._stack else None
        if top is None or top.array:
            self._plain_string(token)
            return
        if top.expect_key:
            top.key, top.expect_key = _decoded(token), False
            self._emit(token)
            return
        key = top.key
        top.expect_key = False
        if top.data:
            self._data_string(token, top)
        elif key == "kind":
            self._emit(token)
            if top.secret is None:
                top.secret = self._secret_kind(_decoded(token))
            if self._hold is not None and self._hold.owner is top:
                self._release(top.secret)
        elif key == "name":
            top.name = _decoded(token) or ""
            self._emit(token)
        elif key is not None and key.lower() in self._credential_keys:
            self._emit(self._masked_string(token, "credential"))
        elif key == "value" and self._secret_name(top.name):
            self._emit(self._masked_string(token, "secret-env"))
        else:
            self._plain_string(token)

    def _data_string(self, token: str, frame: _Frame) -> None:
        masked = self._masked_string(token, "secret-data")
        secret = self._secrecy(frame.owner)
        if secret is None or self._hold is not None:
            self._emit_pair(token, masked)  # decided with the hold
        elif secret:
            self._emit(masked)
        else:
            self._plain_string(token)

    def _plain_string(self, token: str) -> None:
        """A string that is not data: a Secret as JSON inside it is masked as one."""
        text = _decoded(token)
        if text is not None and text.lstrip().startswith("{") and len(text) > 2:
            inner = self._embedded(text)
            if inner is not None and inner != text:
                self._emit(json.dumps(inner, ensure_ascii=False))
                return
        self._emit(token)

    def _masked_string(self, token: str, name: str) -> str:
        text = _decoded(token)
        if text in ("", None):
            return token
        return f'"{self._placeholder(name)}"'

    # -- output

    def _start_hold(self, owner: _Frame) -> None:
        if self._hold is not None and self._hold.owner is owner:
            return  # `stringData` after `data`, the kind still to come: one hold
        if self._hold is not None:
            self._release(True)  # a section of another object inside the first: both masked
        self._hold = _Hold(owner)

    def _emit(self, text: str) -> None:
        if self._hold is None:  # (what _emit_pair does then, without its call per token)
            self._batch.append(text)
            self._batch_size += len(text)
            return
        self._emit_pair(text, text)

    def _emit_pair(self, plain: str, masked: str) -> None:
        hold = self._hold
        if hold is None:
            self._batch.append(plain)
            self._batch_size += len(plain)
            return
        hold.plain.append(plain)
        hold.masked.append(masked)
        hold.size += len(plain)
        if hold.size > self._cap:
            self._release(True)

    def _release(self, secret: bool) -> None:
        hold, self._hold = self._hold, None
        assert hold is not None
        for piece in hold.masked if secret else hold.plain:
            self._batch.append(piece)
            self._batch_size += len(piece)
        if hold.owner.secret is None:
            hold.owner.secret = secret  # decided: later data of this object goes straight out
        self._cut_batch()

    def _cut_batch(self) -> None:
        if self._batch_size >= SCAN_BATCH and self._hold is None:
            self._flush_batch()

    def _flush_batch(self) -> None:
        if self._batch:
            self._out.append(self._scan("".join(self._batch)))
            self._batch, self._batch_size = [], 0

    def _take(self) -> str:
        out, self._out = "".join(self._out), []
        return out


def _decoded(token: str) -> str | None:
    if _PLAIN_STRING.fullmatch(token):
        return token[1:-1]  # what json.loads makes of it, without its cost per call
    try:
        value = json.loads(token)
    except ValueError:
        return None
    return value if isinstance(value, str) else None
