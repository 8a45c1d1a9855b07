"""Which commands have kubectl started before their record (`invoke._started_ahead`): only
those the policy allows outright and kubectl runs with its own words and guardctl's
kubeconfig alone. Each line here that must not be is a way kubectl could reach a server, or
run with other words, before guardctl has recorded it."""

from __future__ import annotations

import shlex

import pytest

from guardctl.env import Environment
from guardctl.firewall.normalize import normalize
from guardctl.model import Action, CommandDecision, Decision, SimpleCommand
from guardctl.running.invoke import Invocation, _runs_as_is


def _allowed(line: str, action: Action = Action.ALLOW) -> tuple[Invocation, Decision]:
    argv = tuple(shlex.split(line))
    call = normalize(SimpleCommand(argv=("kubectl", *argv)))
    command = CommandDecision(argv=("kubectl", *argv), action=action, call=call)
    return Invocation(argv, None, "terminal"), Decision(action, "", (command,))


@pytest.mark.parametrize("line", [
    "get pods -n dev",
    "get pods -n dev -o yaml",
    "logs web-1 -n dev --tail 20",
    "apply -f deploy.yaml",  # same-user mode: kubectl reads the agent's own file as it is
    "version --client",
])
def test_a_plain_allowed_command_starts_ahead(line: str) -> None:
    invocation, decision = _allowed(line)
    assert _runs_as_is(Environment(environ={}), invocation, decision, use_pty=False)


@pytest.mark.parametrize("line", [
    "-s https://evil.example get pods",
    "--server=https://evil.example get pods",
    "--kubeconfig /tmp/other get pods",
    "--token abc get pods",
    "--username u --password p get pods",
    "--kuberc /tmp/prefs get pods",
    "apply -k overlays/dev",  # kubectl gets the rendering guardctl decided on, not DIR
    "kustomize overlays/dev",  # kubectl renders (and may run plugins) before any kubeconfig
])
def test_a_command_that_names_its_own_server_or_words_never_starts_ahead(line: str) -> None:
    invocation, decision = _allowed(line)
    assert not _runs_as_is(Environment(environ={}), invocation, decision, use_pty=False)


@pytest.mark.parametrize("action", [Action.APPROVE, Action.DENY])
def test_a_command_not_allowed_outright_never_starts_ahead(action: Action) -> None:
    invocation, decision = _allowed("delete pod web-1 -n dev", action)
    assert not _runs_as_is(Environment(environ={}), invocation, decision, use_pty=False)


def test_a_command_on_a_terminal_never_starts_ahead() -> None:
    invocation, decision = _allowed("get pods -n dev")
    assert not _runs_as_is(Environment(environ={}), invocation, decision, use_pty=True)
