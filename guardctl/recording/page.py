"""`guardctl replay --html FILE`: a web page that plays a cast with the asciinema player,
for sharing a session in a review.

The page holds the cast (masked output only, as recorded) and points at the player, the
npm package `asciinema-player` (3.x), by URL: guardctl never ships a copy of it. By default
that is a pinned version on the jsDelivr CDN, checked by the browser against its sha384
(subresource integrity); `--player` names another copy, an npm install's
`node_modules/asciinema-player` folder or a URL of one. The page lists the session's
commands (its `$ COMMAND` markers); each one seeks the player there. A `#t=SECONDS` at the
end of the page's address starts it at that time, to point a reviewer at a moment.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

from guardctl.errors import UsageError
from guardctl.recording import cast

PLAYER_VERSION = "3.18.0"
CDN = f"https://cdn.jsdelivr.net/npm/asciinema-player@{PLAYER_VERSION}"
# the player's files in its npm package, under the package's folder
SCRIPT = "dist/bundle/asciinema-player.min.js"
STYLE = "dist/bundle/asciinema-player.css"
# sha384 of the two files of the pinned version (as its npm package holds them); only the
# CDN copy is checked, a copy `--player` names is the user's own
INTEGRITY = {
    SCRIPT: "sha384-Veqg/k5y0RDQVDMcJ5apbINwnaVn+thwGf0VUCIEoVS//HsYJUXs3hfJemQ0ZpFZ",
    STYLE: "sha384-M64RcoPH5WhOT4D7DoDeewKoZLgRfKssonLIww/YDp+svs9dnhSLnZMvrckjHA1i",
}


class PlayerSource(NamedTuple):
    """Where the page loads the player from: the package folder's URL, and whether the
    files are the pinned CDN ones (checked by integrity)."""

    base: str
    pinned: bool = False

    def url(self, file: str) -> str:
        return f"{self.base.rstrip('/')}/{file}"

    def integrity(self, file: str) -> str:
        if not self.pinned:
            return ""
        return f' integrity="{INTEGRITY[file]}" crossorigin="anonymous"'


DEFAULT_PLAYER = PlayerSource(CDN, pinned=True)


class Command(NamedTuple):
    """A command marker: its index among the cast's markers (what the player seeks by) and
    its playback time (idle limit applied, as the player applies it)."""

    marker: int
    time: float
    line: str


def commands(frames: Iterable[tuple[float, cast.Event]]) -> list[Command]:
    """The command markers among (playback time, event) frames."""
    found: list[Command] = []
    markers = ((at, e) for at, e in frames if e.code == cast.MARKER)
    for index, (at, event) in enumerate(markers):
        line = cast.command_of(event.data)
        if line is not None:
            found.append(Command(index, at, line))
    return found


def _script_json(value: object) -> str:
    """JSON safe inside a <script> element: no "<", so no "</script>" can end it."""
    return json.dumps(value, ensure_ascii=True).replace("<", "\\u003c")


def page(
    text: str,
    head: Mapping[str, object],
    found: list[Command],
    player: PlayerSource,
    options: Mapping[str, object] | None = None,
) -> str:
    """The page for the cast `text` (its header `head`, its command markers `found`);
    `options` go to the player as they are (`speed`, `idleTimeLimit`)."""
    meta = head.get("guardctl")
    session = meta.get("session") if isinstance(meta, Mapping) else None
    title = f"guardctl session {session}" if isinstance(session, str) else "guardctl recording"
    items = "\n".join(
        f'<li><button data-marker="{c.marker}">{c.time:8.1f}s</button> '
        f"<code>$ {html.escape(c.line)}</code></li>"
        for c in found
    )
    return _TEMPLATE.format(
        title=html.escape(title),
        style=html.escape(player.url(STYLE), quote=True),
        style_integrity=player.integrity(STYLE),
        script=html.escape(player.url(SCRIPT), quote=True),
        script_integrity=player.integrity(SCRIPT),
        commands=items or "<li>(no commands recorded)</li>",
        cast=_script_json(text),
        options=_script_json({"fit": "width", "terminalFontSize": "small", **(options or {})}),
    )


def player_source(given: str | None) -> PlayerSource:
    """`--player`: a URL as given, or a local folder of the npm package as a file:// URL;
    None: the pinned CDN copy. UsageError for a folder that holds no player."""
    if given is None:
        return DEFAULT_PLAYER
    folder = Path(given).expanduser()
    if "://" in given or not folder.exists():
        return PlayerSource(given)
    if not (folder / SCRIPT).is_file():
        raise UsageError(
            f"--player: {given} holds no {SCRIPT}: give the folder of the npm package "
            "(`npm install asciinema-player@3` puts it in node_modules/asciinema-player) or a URL"
        )
    return PlayerSource(folder.resolve().as_uri())


_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="guardctl replay --html">
<title>{title}</title>
<link rel="stylesheet" href="{style}"{style_integrity}>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; background: #fafafa; }}
h1 {{ font-size: 1.2rem; }}
#commands {{ list-style: none; padding: 0; font-size: 0.9rem; }}
#commands button {{ font-family: monospace; margin-right: 0.5em; cursor: pointer; }}
</style>
</head>
<body>
<h1>{title}</h1>
<div id="player"></div>
<h2>Commands</h2>
<ol id="commands">
{commands}
</ol>
<script src="{script}"{script_integrity}></script>
<script>
(function () {{
  const cast = {cast};
  const start = /^#t=([0-9.]+)$/.exec(window.location.hash);
  const options = {options};
  if (start) {{ options.startAt = Number(start[1]); options.poster = "npt:" + start[1]; }}
  const player = AsciinemaPlayer.create(
    {{ data: cast }}, document.getElementById("player"), options);
  document.querySelectorAll("#commands button").forEach(function (button) {{
    button.addEventListener("click", function () {{
      player.seek({{ marker: Number(button.dataset.marker) }}).then(function () {{
        return player.play();
      }});
    }});
  }});
  window.guardctlPlayer = player;
}})();
</script>
</body>
</html>
"""
