"""A tiny guardctl stand-in for the runner's tests: runs a command through `runner.run`.

    python run_harness.py pipes|pty CMD ARGS...

Exits with run()'s return value. The filter shows `hello` as `HELLO`, so a test can see
that output went through it. In pty mode it prints whether the terminal was restored.
"""

from __future__ import annotations

import os
import sys
import termios

from guardctl.running.runner import run


class ReplaceFilter:
    """Replaces `old` with `new`, holding back a possible partial match across chunks."""

    def __init__(self, old: bytes, new: bytes) -> None:
        self.old, self.new = old, new
        self.held = b""
        self.fed: list[bytes] = []

    def feed(self, data: bytes) -> bytes:
        self.fed.append(data)
        text = (self.held + data).replace(self.old, self.new)
        keep = next((n for n in range(len(self.old) - 1, 0, -1)
                     if text.endswith(self.old[:n])), 0)
        self.held = text[len(text) - keep:] if keep else b""
        return text[: len(text) - keep]

    def flush(self) -> bytes:
        held, self.held = self.held, b""
        return held


def main(mode: str, argv: list[str]) -> int:
    saved = termios.tcgetattr(0) if os.isatty(0) else None
    code = run(argv, dict(os.environ), stdout_filter=ReplaceFilter(b"hello", b"HELLO"),
               stderr_filter=ReplaceFilter(b"hello", b"HELLO"), stdin=None,
               use_pty=mode == "pty", stdout=sys.stdout.buffer, stderr=sys.stderr.buffer)
    if saved is not None:
        restored = termios.tcgetattr(0) == saved
        sys.stdout.write("terminal restored\n" if restored else "terminal NOT restored\n")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
