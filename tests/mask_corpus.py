"""The labelled masking corpus (tests/corpus/mask): realistic kubectl output in which every
secret string is written between ⟦ and ⟧, and what the masker makes of it.

Each file starts with `%% ARGS`, the kubectl arguments that printed it (the masker is chosen
for them, as `guardctl ARGS` would). Used by tests/test_mask_corpus.py and by
bench/bench_mask_recall.py, which compares guardctl with detect-secrets on the same cases.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

CORPUS = Path(__file__).resolve().parent / "corpus" / "mask"
_MARKED = re.compile("⟦(.*?)⟧", re.S)
# a secret counts as leaked when any run of this many of its characters is shown
WINDOW = 12


class Case(NamedTuple):
    name: str
    argv: list[str]
    text: str  # the output, markers removed
    secrets: list[str]
    outside: str  # the output without its secrets


class Result(NamedTuple):
    case: Case
    output: str
    leaked: list[str]  # secrets shown whole or in part
    kept: int  # characters of secret-free lines shown unchanged
    keepable: int  # characters of secret-free lines


def cases() -> list[Case]:
    found = []
    for path in sorted(CORPUS.glob("*.txt")):
        head, _, body = path.read_text(encoding="utf-8").partition("\n")
        assert head.startswith("%% "), f"{path}: the first line must be `%% ARGS`"
        found.append(Case(path.stem, head[3:].split(), _MARKED.sub(r"\1", body),
                          _MARKED.findall(body), _MARKED.sub("", body)))
    return found


def _shown(secret: str, output: str, outside: str) -> bool:
    """Whether the output shows a secret, whole or a run of it (a short secret that the
    text shows elsewhere too, such as a name, only where it shows it more often)."""
    if len(secret) <= WINDOW:
        return output.count(secret) > outside.count(secret)
    return any(w in output for w in _windows(secret, outside))


def _windows(secret: str, clean: str) -> list[str]:
    """The runs of a secret whose showing leaks it (runs found elsewhere in the text, such
    as a common prefix, do not count)."""
    if len(secret) <= WINDOW:
        return [secret]
    runs = {secret[i : i + WINDOW] for i in range(len(secret) - WINDOW + 1)}
    return [r for r in runs if r not in clean]


def measure(case: Case, mask: Callable[[list[str], str], str]) -> Result:
    output = mask(case.argv, case.text)
    leaked = [s for s in case.secrets if _shown(s, output, case.outside)]
    shown = Counter(output.splitlines())
    kept = keepable = 0
    for line in case.text.splitlines():
        if any(s in line for s in case.secrets) or not line.strip():
            continue
        keepable += len(line)
        if shown[line] > 0:
            shown[line] -= 1
            kept += len(line)
    return Result(case, output, leaked, kept, keepable)


def guardctl_mask(argv: list[str], text: str, chunk: int = 4096) -> str:
    from guardctl.masking.detectors import default_detectors
    from guardctl.masking.mask import masker_for

    masker = masker_for(argv, default_detectors())
    data = text.encode()
    out = b"".join(masker.feed(data[i : i + chunk]) for i in range(0, len(data), chunk))
    return (out + masker.flush()).decode()
