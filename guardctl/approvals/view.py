"""One screen of `guardctl approvals`: laid out to fit the terminal exactly.

The screen is drawn whole, in place, on the terminal's alternate screen (console.py), so it
must never be taller than the terminal: a line too many scrolls the top away. Top to
bottom: the pending count, the list of requests (a window around the selected one when
there are many), the selected request's panel, the last message and the keys. The panel's
fixed part — who asked, the command, its reading, rules, context, cluster, namespaces,
risks — comes first; the long part (a `-f -` manifest, the diff) gets the rows that are
left, and scrolls. So a diff of any length never pushes the command, the rules or the keys
off the screen.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.panel import Panel
from rich.segment import Segment
from rich.text import Text

from guardctl.approvals.prompt import request_details, request_grid, shown
from guardctl.approvals.queue import Request

KEYS_LONG = (
    "a approve once   w approve rule+namespace for a while   d decline with a reason   "
    "j/k or arrows select   PgUp/PgDn/space scroll   q quit"
)
KEYS_SHORT = "a approve  w window  d deny  j/k select  PgUp/PgDn scroll  q quit"
# the panel's border and padding: a line on each side, two columns on each side
PANEL_ROWS, PANEL_COLUMNS = 2, 4
# the list never takes more than this share of the rows, nor the details fewer than this
LIST_SHARE = 4
MIN_DETAIL_ROWS = 3


class Frame(NamedTuple):
    renderable: RenderableType
    detail_rows: int  # rows of the scrollable part shown (a page)
    detail_lines: int  # lines the scrollable part has in all
    offset: int  # the first of them shown (clamped)


class _Lines:
    """Lines rendered ahead, drawn as they are (their height is known)."""

    def __init__(self, lines: Sequence[list[Segment]]) -> None:
        self.lines = lines

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for line in self.lines:
            yield from line
            yield Segment.line()


def _render(console: Console, renderable: RenderableType, width: int) -> list[list[Segment]]:
    return console.render_lines(renderable, console.options.update(width=max(1, width)),
                                pad=False)


def _list_lines(pending: list[Request], selected: str | None, rows: int) -> list[Text]:
    """At most `rows` lines of the list, a window that holds the selected request."""
    index = next((i for i, r in enumerate(pending) if r.id == selected), 0)
    first = min(max(0, index - rows // 2), max(0, len(pending) - rows))
    lines = []
    for request in pending[first:first + rows]:
        mark = ">" if request.id == selected else " "
        rules = ",".join(r for r, _ in request.rules) or "not understood"
        namespaces = ",".join(n or "-" for n in request.namespaces)
        lines.append(Text(f"{mark} {rules}  [{namespaces}]  {shown(request.line)}",
                          no_wrap=True, overflow="ellipsis"))
    return lines


def frame(
    console: Console,
    pending: list[Request],
    selected: Request | None,
    now: float,
    *,
    message: str,
    bottom: str | None,
    offset: int,
) -> Frame:
    """The whole screen for `console.size`. `bottom` is a line being typed (its prompt and
    text), else the keys are shown; `offset` is the first line of the details shown."""
    width, height = console.size
    header = Text(f"guardctl approvals: {len(pending)} pending", style="bold", no_wrap=True,
                  overflow="ellipsis")
    if len(pending) > 1:
        header.append(f"  (j/k select among {len(pending)})", style="")
    tail: list[RenderableType] = []
    if message:
        tail.append(Text(message, overflow="fold"))
    keys = KEYS_LONG if len(KEYS_LONG) <= width else KEYS_SHORT
    tail.append(Text(bottom + "_", overflow="fold") if bottom is not None
                else Text(keys, no_wrap=True, overflow="ellipsis"))
    tail_lines = [line for part in tail for line in _render(console, part, width)]
    if selected is None:
        body: list[RenderableType] = [*_list_lines(pending, None, len(pending)),
                                      Text("no requests are waiting")]
        return Frame(_fit(console, [header, *body], tail_lines, height), 0, 0, 0)
    inner = width - PANEL_COLUMNS
    grid = _render(console, request_grid(selected, now), inner)
    details = request_details(selected)
    detail = _render(console, details, inner) if details is not None else []
    fixed = 1 + PANEL_ROWS + len(tail_lines) + (1 if detail else 0)
    list_rows = max(1, min(len(pending), height // LIST_SHARE))
    if height - fixed - list_rows - len(grid) < MIN_DETAIL_ROWS:
        list_rows = 1
    room = height - fixed - list_rows
    grid = grid[:max(1, room)]  # the command and rules lead the grid; the rest may be cut
    rows = max(0, room - len(grid)) if detail else 0
    offset = max(0, min(offset, len(detail) - rows))
    inside: list[RenderableType] = [_Lines(grid)]
    if detail and rows:
        last = min(len(detail), offset + rows)
        scroll = "  PgUp/PgDn/space scroll" if len(detail) > rows else ""
        inside += [Text(f"details: lines {offset + 1}-{last} of {len(detail)}{scroll}",
                        style="bold", no_wrap=True, overflow="ellipsis"),
                   _Lines(detail[offset:last])]
    panel = Panel(Group(*inside), title="approval needed", title_align="left")
    body = [*_list_lines(pending, selected.id, list_rows), panel]
    return Frame(_fit(console, [header, *body], tail_lines, height), rows, len(detail), offset)


def _fit(console: Console, top: Iterable[RenderableType], tail: list[list[Segment]],
         height: int) -> RenderableType:
    """`top` cut to the rows the tail leaves, then the tail: never taller than `height`."""
    width = console.size.width
    lines = [line for part in top for line in _render(console, part, width)]
    room = max(0, height - len(tail))
    return _Lines([*lines[:room], *tail][-height:] if height > 0 else [])
