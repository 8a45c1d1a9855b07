"""A scripted stand-in for kubectl, for the runner's pipe and pty tests.

    python fake_kubectl.py MODE [ARG]

Modes write raw bytes straight to fds 1 and 2 (no text layer, no newline translation).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from types import FrameType

# every wait below is bounded, so a broken test cannot leave this running
MAX_WAIT_SECONDS = 10.0


def out(data: bytes, fd: int = 1) -> None:
    while data:
        data = data[os.write(fd, data):]


def mode_bytes(_arg: str) -> int:
    out(b"line one\r\nline two\n\x00\x01\xfe\xff\x1b[31mred\x1b[0m no newline")
    out(b"warning: on stderr\r\n", 2)
    return 0


def mode_exit(arg: str) -> int:
    out(b"some output\n")
    out(b"some error\n", 2)
    return int(arg)


def mode_cat(_arg: str) -> int:
    for _ in range(10_000):
        data = os.read(0, 65536)
        if not data:
            return 0
        out(data)
    return 0


def mode_split(arg: str) -> int:
    # a secret in two writes with a pause between, so the reader sees two chunks
    half = len(arg) // 2
    out(b"before " + arg[:half].encode())
    time.sleep(0.2)
    out(arg[half:].encode() + b" after\n")
    out(b"err " + arg[:half].encode(), 2)
    time.sleep(0.2)
    out(arg[half:].encode() + b"\n", 2)
    return 0


def mode_flood(_arg: str) -> int:
    """Far more output than a pipe holds (64 MiB), for a reader that goes away."""
    # Python ignores SIGPIPE; kubectl (Go) dies of it when its stdout reader is gone
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    line = b"x" * 1023 + b"\n"
    for _ in range(64 * 1024):
        out(line)
    return 0


def mode_signal(arg: str) -> int:
    out(b"dying\n")
    os.kill(os.getpid(), int(arg))
    time.sleep(MAX_WAIT_SECONDS)
    return 99


def mode_wait_signal(_arg: str) -> int:
    """Count SIGINT/SIGTERM for a moment after the first, report them, exit 7."""
    seen: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        seen.append(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    out(b"ready\n")
    deadline = time.monotonic() + MAX_WAIT_SECONDS
    while not seen and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)  # a duplicate would arrive in this window
    names = ",".join(signal.Signals(s).name for s in seen)
    out(f"got {names}\n".encode())
    return 7


def _size() -> str:
    size = os.get_terminal_size(1)
    return f"{size.lines}x{size.columns}"


def mode_interactive(_arg: str) -> int:
    """Report the window size and each resize; echo lines until `quit`."""

    def on_winch(_signum: int, _frame: FrameType | None) -> None:
        out(f"resized {_size()}\n".encode())

    signal.signal(signal.SIGWINCH, on_winch)
    out(f"size {_size()}\n".encode())
    for _ in range(100):
        out(b"prompt> ")
        line = sys.stdin.readline()
        if not line or line.strip() == "quit":
            return 0
        out(f"you said: {line.strip()}\n".encode())
    return 0


MODES = {
    "bytes": mode_bytes,
    "exit": mode_exit,
    "cat": mode_cat,
    "split": mode_split,
    "flood": mode_flood,
    "signal": mode_signal,
    "wait-signal": mode_wait_signal,
    "interactive": mode_interactive,
}

if __name__ == "__main__":
    sys.exit(MODES[sys.argv[1]](sys.argv[2] if len(sys.argv) > 2 else ""))
