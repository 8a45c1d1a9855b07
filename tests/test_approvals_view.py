"""The live view in real terminals: tmux at 80x24 and 120x40 (what is on the screen, the
scrollback, the title), and a pexpect pty (the bell and the desktop notification).

Requests are queued by this test process (its pid keeps them alive), with a diff and a
manifest far longer than any screen.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pexpect
import pytest

from guardctl.app import Checker
from guardctl.approvals.queue import Queue, Request, build_request
from guardctl.env import Environment

REPO = str(Path(__file__).resolve().parent.parent)
WAIT = 20
LONG_DIFF = "\n".join(f"+  line-{n:03}: value" for n in range(300))
MANIFEST = "\n".join(f"# manifest line {n:03}" for n in range(50))
TOKEN = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"

needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")


def _queue(home: Path, pod: str, *, diff: str | None = LONG_DIFF, run: str = "sh") -> Request:
    line = f"kubectl exec -it {pod} -n dev -- {run}"
    request = build_request(Checker.load(Environment()).check(line), line, cluster="",
                            context="ctx", default_namespace="", diff=diff, now=time.time(),
                            timeout=300, manifest=MANIFEST)
    Queue(home).put(request)
    return request


class Tmux:
    """One tmux server of the test's own (its socket in a temporary folder)."""

    def __init__(self, folder: Path) -> None:
        self.socket = str(folder / "tmux.sock")

    def run(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-S", self.socket, "-f", "/dev/null", *args],
                              capture_output=True, text=True, timeout=WAIT, check=True)
        return done.stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "view")

    def value(self, name: str) -> str:
        return self.run("display-message", "-p", "-t", "view", f"#{{{name}}}").strip()

    def wait_for(self, text: str) -> str:
        """The screen once it shows `text` (bounded)."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never shown; the screen:\n{self.screen()}")


    def wait_for_change(self, part: Callable[[str], str]) -> str:
        """The screen once `part` of it differs from what it is now (bounded)."""
        before = part(self.screen())
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            screen = self.screen()
            if part(screen) != before:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{before!r} never changed")


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    server = Tmux(tmp_path)
    yield server
    subprocess.run(["tmux", "-S", server.socket, "kill-server"], capture_output=True,
                   timeout=WAIT)


def _start(tmux: Tmux, columns: int, rows: int) -> None:
    environ = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    command = f"{sys.executable} -m guardctl approvals"
    subprocess.run(["tmux", "-S", tmux.socket, "-f", "/dev/null", "new-session", "-d", "-s",
                    "view", "-x", str(columns), "-y", str(rows), command],
                   env={**environ, "PYTHONPATH": REPO}, check=True, timeout=WAIT)


@needs_tmux
@pytest.mark.parametrize(("columns", "rows"), [(80, 24), (120, 40)])
def test_the_view_fits_the_screen_and_leaves_no_scrollback(
    isolated_home: Path, tmux: Tmux, columns: int, rows: int
) -> None:
    first = _queue(isolated_home, "web-a")
    _start(tmux, columns, rows)
    screen = tmux.wait_for("q quit")
    assert tmux.value("alternate_on") == "1"
    lines = screen.splitlines()
    assert len(lines) <= rows
    # the command, its rule and the keys are in sight whatever the diff's length
    assert any("command" in line and first.line in line for line in lines), screen
    assert any("rules" in line and "exec-into-container" in line for line in lines), screen
    assert "details: lines 1-" in screen and "of 352" in screen
    assert "manifest line 000" in screen and "line-299" not in screen
    # scrolling the details moves only them
    tmux.run("send-keys", "-t", "view", *["NPage"] * 60)
    screen = tmux.wait_for("line-299")
    assert first.line in screen and "exec-into-container" in screen and "q quit" in screen
    # more requests and selections redraw the screen, each time in place
    others = [_queue(isolated_home, f"web-{c}") for c in "bcd"]
    tmux.wait_for("4 pending")
    assert tmux.value("pane_title") == "guardctl approvals: 4 pending"
    tmux.run("send-keys", "-t", "view", "j", "j", "k")
    screen = tmux.wait_for(f"> exec-into-container  [dev]  {others[0].line}")
    assert tmux.value("history_size") == "0"
    # the key answers the request shown: the second, selected one, and only it
    tmux.run("send-keys", "-t", "view", "a")
    tmux.wait_for(f"approved once: {others[0].line}")
    queue = Queue(isolated_home)
    assert queue.take_answer(others[0]) is not None
    assert [queue.take_answer(r) for r in (first, *others[1:])] == [None, None, None]
    tmux.wait_for("3 pending")
    assert tmux.value("pane_title") == "guardctl approvals: 3 pending"
    # the periodic redraws (the time left, every 5 s): two of them, each in place
    for _ in range(2):
        tmux.wait_for_change(_waits)
    assert tmux.value("history_size") == "0"


def _waits(screen: str) -> str:
    """The time left as the screen shows it."""
    return next(line for line in screen.splitlines() if "waits" in line and "s more" in line)


@needs_tmux
def test_typing_a_reason_at_80x24(isolated_home: Path, tmux: Tmux) -> None:
    request = _queue(isolated_home, "web-a")
    _start(tmux, 80, 24)
    tmux.wait_for("q quit")
    # Esc cancels: the keys come back, nothing is answered
    tmux.run("send-keys", "-t", "view", "d")
    tmux.wait_for("reason for declining")
    tmux.run("send-keys", "-t", "view", "-l", "oops")
    tmux.wait_for("oops_")
    tmux.run("send-keys", "-t", "view", "Escape")
    screen = tmux.wait_for("q quit")
    assert "reason for declining" not in screen and "oops" not in screen
    assert Queue(isolated_home).take_answer(request) is None
    tmux.run("send-keys", "-t", "view", "d")
    tmux.wait_for("reason for declining")
    tmux.run("send-keys", "-t", "view", "-l", "use kubectl logs instead")
    screen = tmux.wait_for("use kubectl logs instead_")
    assert request.line in screen and "exec-into-container" in screen
    tmux.run("send-keys", "-t", "view", "Enter")
    tmux.wait_for("declined: use kubectl logs instead")
    outcome = Queue(isolated_home).take_answer(request)
    assert outcome is not None and outcome.reason == "use kubectl logs instead"
    assert tmux.value("history_size") == "0"


def test_a_new_request_rings_and_notifies(isolated_home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "bin"
    folder.mkdir()
    said = tmp_path / "notified"
    fake = folder / "notify-send"
    fake.write_text(f'#!/bin/sh\nprintf "%s|" "$@" >> {said}\necho >> {said}\n')
    fake.chmod(0o755)
    _queue(isolated_home, "web-old", diff=None)  # waiting before the view starts: no bell
    environ = {**os.environ, "PYTHONPATH": REPO, "PATH": f"{folder}:{os.environ['PATH']}"}
    console = pexpect.spawn(sys.executable, ["-m", "guardctl", "approvals"], env=environ,
                            dimensions=(40, 120), timeout=WAIT)
    try:
        console.expect("q quit")
        assert b"\x07" not in console.before
        _queue(isolated_home, "web-new", diff=None, run=f"env GITHUB_TOKEN={TOKEN} sh")
        console.expect(rb"\x1b\]0;guardctl approvals: 2 pending\x1b\\")
        console.expect(b"\x07")  # the bell
        deadline = time.monotonic() + WAIT
        while not said.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        console.send("q")
        console.expect(pexpect.EOF)
    finally:
        console.close(force=True)
    text = said.read_text()
    assert text.count("\n") == 1  # one notification: the new request only
    assert "guardctl: 1 approval request(s)" in text and "exec-into-container" in text
    assert "kubectl exec -it web-new -n dev -- env GITHUB_TOKEN=«masked:" in text
    assert TOKEN not in text and "web-old" not in text
