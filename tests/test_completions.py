"""Shell completions: the generated command list is current, `guardctl completion SHELL`
prints the scripts, and real shells complete guardctl's own words and kubectl's words
(verbs and flags from the real kubectl, never a shim; names through guardctl's own
credentials, never the person's kubeconfig)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pexpect
import pytest

from guardctl.devserver import DevServer

REPO = Path(__file__).resolve().parent.parent
COMPLETIONS = REPO / "completions"
KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
TIMEOUT = 30


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_completions",
                                                  REPO / "scripts" / "gen_completions.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _generator()


def test_scripts_list_every_command_of_the_click_group() -> None:
    assert GEN.stale_scripts(write=False) == [], "run: python scripts/gen_completions.py"


def test_generated_names_are_what_main_routes_to_click() -> None:
    from guardctl.cli import cli

    assert GEN.command_names() == sorted(cli.commands)
    assert "check" in GEN.command_names() and "get" not in GEN.command_names()


@pytest.mark.parametrize("name", sorted(GEN.LINES))
def test_render_replaces_only_the_marked_line(name: str) -> None:
    text = (COMPLETIONS / name).read_text()
    fresh = GEN.render(text, GEN.LINES[name], ["alpha", "beta"])
    changed = [(a, b) for a, b in zip(text.split("\n"), fresh.split("\n"), strict=True) if a != b]
    assert len(changed) == 1
    assert "alpha beta" in changed[0][1] and changed[0][1].endswith(GEN.MARKER)
    assert GEN.render(fresh, GEN.LINES[name], ["alpha", "beta"]) == fresh


@pytest.mark.parametrize("text", ["no marker here\n", f"a {GEN.MARKER}\nb {GEN.MARKER}\n"])
def test_render_needs_exactly_one_marked_line(text: str) -> None:
    with pytest.raises(ValueError, match="expected one line"):
        GEN.render(text, "{words}", ["check"])


@pytest.mark.parametrize(
    ("shell", "args"),
    [("bash", ["-n"]), ("zsh", ["-n"]), ("fish", ["--no-execute"])],
)
def test_scripts_parse(shell: str, args: list[str]) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    script = COMPLETIONS / f"guardctl.{shell}"
    result = subprocess.run([shell, *args, str(script)], capture_output=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------- in real shells


@pytest.fixture(scope="module")
def server() -> Iterator[DevServer]:
    with DevServer() as dev:
        yield dev


@pytest.fixture
def shell_env(server: DevServer, tmp_path: Path) -> dict[str, str]:
    """guardctl on PATH, then a kubectl shim that records being called, then kubectl."""
    assert KUBECTL is not None
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "guardctl"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m guardctl "$@"\n')
    wrapper.chmod(0o755)
    shim_dir = tmp_path / "shim"
    shim_dir.mkdir()
    shim = shim_dir / "kubectl"
    shim.write_text(f'#!/bin/sh\n# guardctl shim\ntouch {tmp_path / "shim-was-called"}\n'
                    'exec guardctl "$@"\n')
    shim.chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    path = os.pathsep.join([str(bin_dir), str(shim_dir), str(Path(KUBECTL).parent), "/usr/bin",
                            "/bin"])
    env = {
        "PATH": path,
        "HOME": str(home),
        # the person's kubeconfig is not there: names come through guardctl's credentials
        "KUBECONFIG": str(tmp_path / "nonexistent"),
        "TERM": "dumb",
        "LANG": "C.UTF-8",
        "NO_COLOR": "1",
        "GUARDCTL_HOME": str(tmp_path / "state"),
        "GUARDCTL_CONFIG": str(tmp_path / "config.yaml"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "XDG_RUNTIME_DIR": str(runtime),
        "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
    }
    _import(env, server.write_kubeconfig(tmp_path / "admin.kubeconfig"))
    return env


def _import(env: dict[str, str], kubeconfig: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "guardctl", "creds", "import", "--kubeconfig",
                           str(kubeconfig), "--service-account", "guardctl/guardctl-agent"],
                          env=env, capture_output=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr


# (typed line, words that must be offered)
CASES = [
    ("guardctl che", ["check"]),
    ("guardctl rules l", ["lint", "list"]),
    ("guardctl ge", ["get"]),
    ("guardctl get po", ["pods", "podtemplates"]),
    ("guardctl kubectl get po", ["pods", "podtemplates"]),
    ("guardctl get pods -n de", ["dev"]),
    ("guardctl get pods -n dev web-7d4b9c8f6d-x", ["web-7d4b9c8f6d-x2k9p"]),
    ("guardctl get pods --output=js", ["json", "jsonpath"]),
]


# shell, its arguments for an interactive session without user files, its set-up line
INTERACTIVE = [
    ("bash", ["--norc", "--noprofile", "-i"],
     "bind 'set show-all-if-ambiguous on'; bind 'set page-completions off'; "
     "bind 'set completion-query-items 0'; source {script}"),
    ("zsh", ["-f", "-i"],
     "autoload -U compinit; compinit -u; unsetopt list_ambiguous; source {script}"),
]


def _abandon_line(child: pexpect.spawn) -> None:
    """Clear the typed line and get a fresh prompt. Keys, not Ctrl-C: the shell may still be
    in its completion function when the words show, and a SIGINT then may stop that (and the
    guardctl it runs) without a new prompt; keys wait their turn."""
    child.sendcontrol("u")
    child.sendline("")
    child.expect_exact("READY> ")


@needs_kubectl
@pytest.mark.parametrize(("shell", "args", "setup"), INTERACTIVE)
def test_interactive_shell_completes(shell_env: dict[str, str], tmp_path: Path, shell: str,
                                     args: list[str], setup: str) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    child = pexpect.spawn(shell, args, env=shell_env, encoding="utf-8", timeout=TIMEOUT,
                          dimensions=(60, 250))
    try:
        # the prompt is spelled in two pieces so the echoed command does not match it
        script = COMPLETIONS / f"guardctl.{shell}"
        child.sendline("PS1='READY''> '; " + setup.format(script=script))
        child.expect_exact("READY> ")
        for line, offered in CASES:
            child.send(line + "\t")
            for word in offered:
                child.expect_exact(word)
            _abandon_line(child)
        child.send("guardctl che\t")
        child.expect_exact("guardctl check ")  # one candidate: completed in place
        _abandon_line(child)
    finally:
        child.sendline("exit")
        child.close(force=True)
    assert not (tmp_path / "shim-was-called").exists()


@needs_kubectl
@pytest.mark.parametrize(("line", "offered"), CASES)
def test_fish_completes(shell_env: dict[str, str], tmp_path: Path, line: str,
                        offered: list[str]) -> None:
    if shutil.which("fish") is None:
        pytest.skip("fish is not installed")
    result = subprocess.run(
        ["fish", "--no-config", "-c",
         f"source {COMPLETIONS / 'guardctl.fish'}; complete -C '{line}'"],
        env=shell_env, capture_output=True, text=True, timeout=TIMEOUT,
    )
    words = {ln.split("\t")[0] for ln in result.stdout.splitlines()}
    prefix = line.rsplit(" ", 1)[-1].partition("=")[0] + "=" if "=" in line else ""
    assert {prefix + w for w in offered} <= words, result.stdout
    assert not (tmp_path / "shim-was-called").exists()


# --------------------------------------------------------------------------- the helper


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_the_script(shell: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "guardctl", "completion", shell],
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0
    assert proc.stdout == (COMPLETIONS / f"guardctl.{shell}").read_text()


def _complete(env: dict[str, str], *words: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-m", "guardctl", "complete-kubectl", "--", *words],
                          env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith(":4\n"), proc.stdout
    return proc.stdout.splitlines()[:-1]


@needs_kubectl
def test_names_come_through_guardctls_credentials_only(
    server: DevServer, shell_env: dict[str, str], tmp_path: Path
) -> None:
    person = {**shell_env, "KUBECONFIG": str(server.write_kubeconfig(tmp_path / "person")),
              "GUARDCTL_CONFIG": str(tmp_path / "none.yaml")}
    # guardctl holds no credential: the person's working kubeconfig is not asked
    assert _complete(person, "get", "pods", "-n", "dev", "") == []
    assert _complete(person, "get", "po") != []  # types need no cluster
    assert "web-7d4b9c8f6d-x2k9p" in _complete(shell_env, "get", "pods", "-n", "dev", "")
    assert "dev" in _complete(shell_env, "get", "pods", "--namespace=")
    assert "web-7d4b9c8f6d-x2k9p" in _complete(shell_env, "logs", "-n", "dev", "w")
    # each listing was decided and recorded like any command
    rows = subprocess.run([sys.executable, "-m", "guardctl", "sessions", "--json"],
                          env=shell_env, capture_output=True, text=True, timeout=TIMEOUT)
    lines = [json.loads(line)["line"] for line in rows.stdout.splitlines()]
    assert "kubectl get pods -o name --namespace dev" in lines


@needs_kubectl
def test_a_listing_the_policy_flags_offers_nothing(shell_env: dict[str, str],
                                                   tmp_path: Path) -> None:
    rules = tmp_path / "strict.yaml"
    rules.write_text("rules:\n  - id: ask-pods\n    action: approve\n    reason: test\n"
                     "    match: \"get pods\"\n")
    env = {**shell_env, "GUARDCTL_RULES": str(rules), "GUARDCTL_APPROVAL_TIMEOUT": "600"}
    assert _complete(env, "get", "pods", "-n", "dev", "") == []  # at once, no approval asked
    assert "dev" in _complete(env, "get", "pods", "-n", "")
