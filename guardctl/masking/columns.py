"""`-o custom-columns=…` output of Secrets: the header and the columns that print an object's
identity (name, namespace, kind, type, labels) stay as they are; every cell of the other
columns is masked (it may print a data value). A table whose header does not show the
titles in order is masked whole, as any template output of Secrets is.
"""

from __future__ import annotations

from collections.abc import Callable


class Columns:
    """Masks a custom-columns table as it streams (complete lines; the rest held)."""

    def __init__(self, columns: list[tuple[str, bool]], mask: Callable[[], str]) -> None:
        self._columns = columns
        self._mask = mask  # the placeholder of a masked cell
        self._starts: list[int] | None = None  # where each column starts, from the header
        self._whole = False  # the header could not be read: every line is masked
        self._partial = ""

    def feed(self, text: str) -> str:
        text = self._partial + text
        cut = text.rfind("\n") + 1
        self._partial = text[cut:]
        return "".join(self._line(line) for line in text[:cut].splitlines(keepends=True))

    def flush(self) -> str:
        rest, self._partial = self._partial, ""
        return self._line(rest) if rest else ""

    def _line(self, line: str) -> str:
        body = line.rstrip("\r\n")
        if not body.strip():
            return line
        if self._starts is None and not self._whole:
            self._starts = self._header(body)
            self._whole = self._starts is None
            if not self._whole:
                return line
        if self._whole or self._starts is None:
            return self._mask() + line[len(body) :]
        return self._row(body) + line[len(body) :]

    def _header(self, body: str) -> list[int] | None:
        starts, pos = [], 0
        for title, _ in self._columns:
            at = body.find(title, pos)
            if at < 0 or (at > 0 and body[at - 1] != " "):
                return None
            starts.append(at)
            pos = at + len(title)
        return starts

    def _row(self, body: str) -> str:
        assert self._starts is not None
        out, ends = [], [*self._starts[1:], None]
        out.append(body[: self._starts[0]])
        for (_, masked), start, end in zip(self._columns, self._starts, ends, strict=True):
            cell = body[start:end]
            value = cell.rstrip(" ")
            if masked and value and value != "<none>":
                placeholder = self._mask()
                gap = cell[len(value) :]
                width = len(cell) if end is not None else len(placeholder)
                cell = placeholder + " " * max(width - len(placeholder), 1 if gap else 0)
            out.append(cell)
        return "".join(out)
