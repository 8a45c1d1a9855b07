"""guardctl.firewall.wrappers: the wrapper table and how one wrapper is peeled."""

from __future__ import annotations

import json

import pytest

from guardctl.firewall.shellword import Word
from guardctl.firewall.wrappers import Invocation, Script, Step, default_table, load_table, unwrap


def inv(*words: str, **fields: object) -> Invocation:
    return Invocation(tuple(Word(w) for w in words), **fields)  # type: ignore[arg-type]


def test_every_entry_of_the_bundled_table_loads() -> None:
    table = default_table()
    for name in ("sudo", "env", "xargs", "find", "eval", "bash", "sh", "watch", "flock", "time"):
        assert name in table


@pytest.mark.parametrize(
    "entry",
    [
        {"names": ["x"], "kind": "nope"},
        {"names": ["x"], "kind": "command", "colour": "red"},
        {"names": ["x"], "kind": "command", "roles": {"-q": "explode"}},
    ],
)
def test_malformed_entries_are_refused(entry: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="bad wrapper entry"):
        load_table(json.dumps({"wrappers": [entry]}))


def test_not_a_wrapper() -> None:
    assert unwrap(inv("kubectl", "get"), default_table()) is None


STEPS = [
    (inv("sudo", "-u", "x", "ls"), Step(inner=(inv("ls", via=("sudo",)),))),
    (inv("sudo", "-v"), Step(emit_self=True)),
    (inv("sudo", "--help", "ls"), Step(emit_self=True)),
    (inv("sudo"), Step(emit_self=True)),
    (inv("env", "A=1", "ls"), Step(inner=(inv("ls", assignments=(("A", "1"),), via=("env",)),))),
    (inv("env", "-S", "ls -l", "x"), Step(inner=(inv("ls", "-l", "x", via=("env",)),))),
    (
        inv("env", "-S", "'open"),
        Step(emit_self=True, problems=("env: cannot split -S string: No closing quotation",)),
    ),
    (inv("bash", "-c", "ls; pwd"), Step(scripts=(Script("ls; pwd", "bash -c"),))),
    (inv("bash", "-c", "--", "ls"), Step(scripts=(Script("ls", "bash -c"),))),
    (
        inv("bash", "-s", stdin_from="heredoc", stdin="ls\n"),
        Step(scripts=(Script("ls\n", "bash <<", inherits_io=False),)),
    ),
    (
        inv("bash", "--rcfile"),
        Step(emit_self=True, problems=("bash: option '--rcfile' has no value",)),
    ),
    (
        inv("bash", "--bogus", "-c", "ls"),
        Step(emit_self=True, problems=("bash: unknown option '--bogus'",)),
    ),
    (inv("eval", "ls", "-l"), Step(scripts=(Script("ls -l", "eval"),))),
    (inv("eval"), Step(emit_self=True)),
    (inv("watch", "-n", "1", "ls", "-l"), Step(scripts=(Script("ls -l", "watch"),))),
    (inv("flock", "f", "--command", "ls"), Step(scripts=(Script("ls", "flock -c"),))),
    (inv("flock", "f"), Step(emit_self=True)),
    (inv("timeout", "5", "ls"), Step(inner=(inv("ls", via=("timeout",)),))),
    (inv("su", "root", "-c", "ls"), Step(scripts=(Script("ls", "su -c"),))),
    (
        inv("su", "-", "root", "-s", "/bin/sh"),
        Step(emit_self=True, problems=("shell reads commands from standard input",)),
    ),
    (
        inv("sudo", "-s", stdin_from="herestring", stdin="ls"),
        Step(scripts=(Script("ls", "sudo <<", inherits_io=False),)),
    ),
    (inv("sudo", "-s", "ls"), Step(inner=(inv("ls", via=("sudo",)),))),
    (inv("xargs", "-a", "list", "ls"), Step(inner=(inv("ls", via=("xargs",), open_tail=True),))),
    (
        inv("xargs", "-L1", "ls", stdin_from="pipe"),
        Step(inner=(inv("ls", via=("xargs",), open_tail=True),)),
    ),
]


@pytest.mark.parametrize(("invocation", "step"), STEPS)
def test_unwrap(invocation: Invocation, step: Step) -> None:
    assert unwrap(invocation, default_table()) == step


def test_dynamic_option_word_is_a_problem() -> None:
    step = unwrap(Invocation((Word("sudo"), Word("$O", dynamic=True), Word("ls"))), default_table())
    assert step == Step(emit_self=True, problems=("sudo: word '$O' is only known at run time",))
