"""`guardctl mask --explain`: for a sample of output, what was masked and by which rule, and
each look-alike a detector matched but kept, with the reason (the masker's `rules explain`).

The report never shows a masked value: a masked finding gives its line and the rule; a kept
look-alike is quoted only where the masked output shows it too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple

from guardctl.masking.detectors import Detector
from guardctl.masking.mask import (
    BINARY,
    COMMAND_OUTPUT,
    CREDENTIAL,
    LITERAL,
    OVERLONG_BASE64,
    SECRET_DATA,
    SECRET_ENV,
    UNFINISHED_KEY,
    Masker,
)

# what the masks that come from structure, not from a detector, stand for
STRUCTURE_RULES = {
    SECRET_DATA: "a value of a Secret's data or stringData (or of an object whose kind never came)",
    CREDENTIAL: "the value of a credential key (token, password, client-key-data, ...)",
    SECRET_ENV: "the value of an env entry or key/value pair whose name looks secret",
    BINARY: "random-looking bytes (base64 or hex) under a secret-looking key",
    LITERAL: "the short-lived token guardctl minted for this run, or a stored credential's value",
    COMMAND_OUTPUT: "a line of template output of Secrets (-o jsonpath/go-template), masked whole",
    OVERLONG_BASE64: "a base64 block too long to read whole",
    UNFINISHED_KEY: "a private key block whose end never came",
    "overlong-value": "a JSON string too long to read whole",
}
_MASK = re.compile("«masked:([^»]+)»")
# the decodings a mask's name may carry (`github-pat+gzip+base64`)
_ENCODINGS = re.compile(r"(?:\+(?:gzip|base64|hex))+$")
# a look-alike is quoted up to this many characters
_SHOWN = 60


class Finding(NamedTuple):
    line: int  # 1-based, in the masked output (the masker keeps line breaks)
    rule: str  # the detector or structure rule
    masked: bool
    reason: str  # masked: what the rule finds; kept: why this match is no secret
    shown: str = ""  # a kept look-alike's text, when the masked output shows it too


def explain(text: str, masker: Masker, detectors: Mapping[str, Detector]) -> list[Finding]:
    """The findings for `text` masked by `masker` (which is then at end of stream)."""
    output = masker.mask_text(text)
    findings = [
        Finding(number, name, True, _describe(name, detectors))
        for number, line in enumerate(output.splitlines(), 1)
        for name in _MASK.findall(line)
    ]
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
    for detector in detectors.values():
        for start, end, why in detector.explain(text):
            if not why:
                continue  # its masks are in the output, found above
            value = text[start:end]
            shown = value if value and value in output else ""
            line = _line_of(line_starts, start)
            findings.append(Finding(line, detector.name, False, why, _clip(shown)))
    return sorted(findings, key=lambda f: (f.line, not f.masked, f.rule))


def _describe(name: str, detectors: Mapping[str, Detector]) -> str:
    base = _ENCODINGS.sub("", name)
    encodings = name[len(base) :].lstrip("+").replace("+", " in ")
    what = detectors[base].description if base in detectors else STRUCTURE_RULES.get(base, "")
    return f"{what} (found in {encodings})" if encodings else what


def _line_of(line_starts: list[int], offset: int) -> int:
    import bisect

    return bisect.bisect_right(line_starts, offset)


def _clip(value: str) -> str:
    return value if len(value) <= _SHOWN else value[: _SHOWN - 1] + "…"


def report(findings: list[Finding]) -> str:
    """The findings as lines of text, a summary last."""
    if not findings:
        return "nothing masked, and no detector matched anything it kept\n"
    width = max(len(f.rule) for f in findings)
    lines = []
    for f in findings:
        verdict = "masked" if f.masked else "kept  "
        detail = f.reason + (f": {f.shown!r}" if f.shown else "")
        lines.append(f"line {f.line:<5} {verdict} {f.rule:{width}}  {detail}")
    masked = sum(f.masked for f in findings)
    lines.append(f"{masked} masked, {len(findings) - masked} look-alikes kept")
    return "\n".join(lines) + "\n"
