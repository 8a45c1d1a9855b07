"""Regenerate the command list in completions/guardctl.{bash,zsh,fish} from the click group.

The scripts are written by hand. One line in each, marked `# generated: scripts/gen_completions.py`,
lists guardctl's own commands: it tells the script which first words are guardctl's (completed
through click's protocol) and which start a kubectl invocation (completed by kubectl). It
holds every command `cli.main()` routes to click, hidden ones included, so that completion
and routing agree.

    python scripts/gen_completions.py          # rewrite the scripts
    python scripts/gen_completions.py --check  # exit 1 and name the stale scripts
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path

COMPLETIONS = Path(__file__).resolve().parent.parent / "completions"
MARKER = "# generated: scripts/gen_completions.py"
# the generated line of each script, by file name
LINES = {
    "guardctl.bash": "_guardctl_commands=({words})  " + MARKER,
    "guardctl.zsh": "_guardctl_commands=({words})  " + MARKER,
    "guardctl.fish": "set -g __guardctl_commands {words}  " + MARKER,
}
# the scripts splice names in unquoted
SAFE_NAME = re.compile(r"[a-z][a-z0-9-]*")


def command_names() -> list[str]:
    """guardctl's own first words, as `cli.main()` routes them."""
    from guardctl.cli import cli

    names = sorted(cli.commands)
    unsafe = [n for n in names if not SAFE_NAME.fullmatch(n)]
    if unsafe:
        raise ValueError(f"command names unsafe to splice into a shell script: {unsafe}")
    return names


def render(text: str, template: str, names: Sequence[str]) -> str:
    """`text` with its one marked line replaced by `template` filled with `names`."""
    lines = text.split("\n")
    marked = [i for i, line in enumerate(lines) if line.rstrip().endswith(MARKER)]
    if len(marked) != 1:
        raise ValueError(f"expected one line ending {MARKER!r}, found {len(marked)}")
    lines[marked[0]] = template.format(words=" ".join(names))
    return "\n".join(lines)


def stale_scripts(folder: Path = COMPLETIONS, *, write: bool) -> list[str]:
    """Names of the scripts whose command list differs from the click group's (rewritten if
    `write`)."""
    names = command_names()
    stale = []
    for file_name, template in LINES.items():
        path = folder / file_name
        text = path.read_text(encoding="utf-8")
        fresh = render(text, template, names)
        if fresh != text:
            stale.append(file_name)
            if write:
                path.write_text(fresh, encoding="utf-8")
    return stale


def main(argv: Sequence[str]) -> int:
    check = "--check" in argv
    stale = stale_scripts(write=not check)
    for name in stale:
        print(f"{'out of date' if check else 'rewrote'}: completions/{name}", file=sys.stderr)
    return 1 if check and stale else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
