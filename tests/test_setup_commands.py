"""Everyday set-up commands, run as a person would (separate guardctl processes, the real
kubectl against the devserver): `creds list/remove`, `ns`, `--json` listings."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest
import yaml
from agent_setup import agent_environ

from guardctl.broker import forkcontrol
from guardctl.devserver import DevServer

KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
SA = "guardctl/guardctl-agent"
TIMEOUT = 60


def guardctl(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "guardctl", *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=TIMEOUT)


def _two_contexts_kubeconfig(server: DevServer, path: Path) -> Path:
    """`server`'s kubeconfig as two contexts, `alpha` (current) and `beta`."""
    doc = server.kubeconfig()
    cluster, user = doc["clusters"][0]["cluster"], doc["users"][0]["user"]
    names = ("alpha", "beta")
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "alpha",
        "clusters": [{"name": n, "cluster": cluster} for n in names],
        "users": [{"name": n, "user": user} for n in names],
        "contexts": [{"name": n, "context": {"cluster": n, "user": n}} for n in names],
    }))
    return path


@pytest.fixture
def two(devserver: DevServer, tmp_path: Path) -> Iterator[dict[str, str]]:
    """An environment with contexts `alpha` (the default) and `beta` imported."""
    env = agent_environ(tmp_path)
    admin = _two_contexts_kubeconfig(devserver, tmp_path / "admin.kubeconfig")
    for extra in ([], ["--context", "beta"]):
        proc = guardctl(env, "creds", "import", "--kubeconfig", str(admin),
                        "--service-account", SA, "--ttl", "10m", *extra)
        assert proc.returncode == 0, proc.stderr
    yield env
    forkcontrol.stop_all(Path(env["XDG_RUNTIME_DIR"]))


def answered(env: dict[str, str], args: list[str], prompts: list[str], answer: str) -> int:
    """The exit status of guardctl ARGS run at a terminal (a real pty), where it shows each
    of `prompts` in turn and the person types `answer` at the last."""
    child = pexpect.spawn(sys.executable, ["-m", "guardctl", *args], env=env,
                          encoding="utf-8", timeout=TIMEOUT)
    try:
        for prompt in prompts:
            child.expect_exact(prompt)
        child.sendline(answer)
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus is not None
    return child.exitstatus


def _keyring_text(env: dict[str, str]) -> str:
    files = sorted(Path(env["XDG_DATA_HOME"]).rglob("*.cfg"))
    return "".join(f.read_text() for f in files)


# --------------------------------------------------------------------------- creds list


def test_creds_list_shows_every_context_and_no_secret(two: dict[str, str],
                                                      devserver: DevServer) -> None:
    text = guardctl(two, "creds", "list")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].split()[:3] == ["CURRENT", "NAME", "NAMESPACE"]
    assert lines[1].split()[:2] == ["*", "alpha"] and lines[2].split()[0] == "beta"
    assert devserver.url in lines[1] and SA in lines[2] and "PlaintextKeyring" in lines[1]
    listed = guardctl(two, "creds", "list", "--json")
    rows = json.loads(listed.stdout)
    assert [(r["context"], r["default"]) for r in rows] == [("alpha", True), ("beta", False)]
    assert all(r["credential_present"] and r["service_account"] == SA for r in rows)
    assert rows[0]["keyring"] == "keyrings.alt.file.PlaintextKeyring"
    token = devserver.kubeconfig()["users"][0]["user"]["token"]
    assert token not in text.stdout + listed.stdout


def test_creds_list_without_config(tmp_path: Path) -> None:
    env = agent_environ(tmp_path)
    proc = guardctl(env, "creds", "list", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout) == []
    assert "creds import" in guardctl(env, "creds", "list").stderr


@needs_kubectl
def test_creds_list_shows_the_token_expiry_once_minted(two: dict[str, str]) -> None:
    assert guardctl(two, "get", "ns").returncode == 0
    rows = json.loads(guardctl(two, "creds", "list", "--json").stdout)
    assert rows[0]["token_expires"] and rows[1]["token_expires"] is None


# --------------------------------------------------------------------------- creds remove


def test_remove_asks_first_and_no_terminal_means_refusal(two: dict[str, str]) -> None:
    proc = guardctl(two, "creds", "remove", "beta")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith("rerun with --yes")
    assert "beta" in guardctl(two, "creds", "list").stdout


def test_remove_a_context_with_yes(two: dict[str, str]) -> None:
    assert "credential_3abeta" in _keyring_text(two)
    proc = guardctl(two, "creds", "remove", "beta", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert "its credential and cached tokens" in proc.stdout
    rows = json.loads(guardctl(two, "creds", "list", "--json").stdout)
    assert [r["context"] for r in rows] == ["alpha"]
    assert "credential_3abeta" not in _keyring_text(two)
    assert "credential_3aalpha" in _keyring_text(two)


def test_remove_the_default_says_which_becomes_default(two: dict[str, str]) -> None:
    proc = guardctl(two, "creds", "remove", "alpha", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert "'beta' becomes the default context" in proc.stdout
    rows = json.loads(guardctl(two, "creds", "list", "--json").stdout)
    assert [(r["context"], r["default"]) for r in rows] == [("beta", True)]
    proc = guardctl(two, "creds", "remove", "beta", "--yes")
    assert "no context is left" in proc.stdout
    assert json.loads(guardctl(two, "creds", "list", "--json").stdout) == []
    assert "credential_3a" not in _keyring_text(two)


def test_remove_an_unknown_context(two: dict[str, str]) -> None:
    proc = guardctl(two, "creds", "remove", "gamma", "--yes")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "it has: alpha, beta" in proc.stderr


def test_remove_at_a_terminal(two: dict[str, str]) -> None:
    for answer, kept in (("n", True), ("y", False)):
        status = answered(two, ["creds", "remove", "beta"], ["Remove context 'beta'? [y/N]"],
                          answer)
        assert status == (1 if kept else 0)
        assert ("beta" in guardctl(two, "creds", "list").stdout) is kept


# --------------------------------------------------------------------------- ns


def _audit(env: dict[str, str]) -> list[dict[str, Any]]:
    text = (Path(env["GUARDCTL_HOME"]) / "audit.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


@needs_kubectl
def test_ns_switches_the_namespace_runs_use(two: dict[str, str]) -> None:
    assert guardctl(two, "ns").stdout == "default\n"
    before = guardctl(two, "get", "pods", "-o", "name")
    assert "web-7d4b9c8f6d-x2k9p" not in before.stdout, before.stderr
    switched = guardctl(two, "ns", "dev")
    assert switched.returncode == 0, switched.stderr
    assert guardctl(two, "ns").stdout == "dev\n"
    assert guardctl(two, "ns", "--context", "beta").stdout == "default\n"
    after = guardctl(two, "get", "pods", "-o", "name")
    assert "web-7d4b9c8f6d-x2k9p" in after.stdout, after.stderr
    # kubectl's -n still wins
    assert "web-7d4b9c8f6d-x2k9p" not in guardctl(two, "get", "pods", "-n", "default",
                                                   "-o", "name").stdout
    records = [r for r in _audit(two) if r.get("argv") == ["guardctl", "ns", "dev"]]
    assert [r["status"] for r in records] == ["started"]
    assert guardctl(two, "audit", "verify").returncode == 0


def test_ns_of_another_context_and_bad_names(two: dict[str, str]) -> None:
    assert guardctl(two, "ns", "--context", "beta", "kube-system").returncode == 0
    assert guardctl(two, "ns", "--context", "beta").stdout == "kube-system\n"
    assert guardctl(two, "ns").stdout == "default\n"
    bad = guardctl(two, "ns", "Prod_1")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    missing = guardctl(two, "ns", "--context", "gamma", "dev")
    assert missing.returncode == 13 and "gamma" in missing.stderr


def test_ns_is_recorded_as_an_invocation(two: dict[str, str]) -> None:
    assert guardctl(two, "ns", "dev").returncode == 0
    rows = [json.loads(line) for line in
            guardctl(two, "sessions", "--json").stdout.splitlines()]
    assert [(r["argv"], r["status"], r["exit_code"]) for r in rows] == [
        (["guardctl", "ns", "dev"], "completed", 0)
    ]


def test_ns_not_recorded_means_not_switched(two: dict[str, str]) -> None:
    state = Path(two["GUARDCTL_HOME"])
    state.mkdir(parents=True, exist_ok=True)
    (state / "audit.jsonl").mkdir()  # a folder where the log should be: it cannot be written
    proc = guardctl(two, "ns", "dev")
    assert proc.returncode == 13 and proc.stderr.count("\n") == 1, proc.stderr
    assert guardctl(two, "ns").stdout == "default\n"


@needs_kubectl
def test_policy_decides_on_the_switched_namespace(two: dict[str, str]) -> None:
    """A rule for kube-* namespaces sees a command without -n once ns is kube-system."""
    line = "kubectl delete pod nothing-here"
    assert json.loads(guardctl(two, "check", "--json", line).stdout)["decision"] == "allow"
    assert guardctl(two, "ns", "kube-system").returncode == 0
    decided = json.loads(guardctl(two, "check", "--json", line).stdout)
    assert decided["decision"] == "approve"
    assert decided["commands"][0]["rules"][0]["id"] == "write-system-namespace"
    other = json.loads(guardctl(two, "check", "--json", line + " --context beta").stdout)
    assert other["decision"] == "allow"


# --------------------------------------------------------------------------- --json listings


def test_rules_list_json(tmp_path: Path) -> None:
    env = agent_environ(tmp_path)
    text = guardctl(env, "rules", "list").stdout.splitlines()
    listed = json.loads(guardctl(env, "rules", "list", "--json").stdout)
    assert [r["id"] for r in listed["rules"]] == [line.split()[0] for line in text]
    rule = next(r for r in listed["rules"] if r["id"] == "delete-namespace")
    assert rule["action"] == "deny" and rule["reason"] and "default.yaml:" in rule["origin"]
    assert any(f.endswith("default.yaml") for f in listed["files"])


def test_doctor_json_matches_its_lines(two: dict[str, str]) -> None:
    text = guardctl(two, "doctor")
    found = guardctl(two, "doctor", "--json")
    assert found.returncode == text.returncode
    report = json.loads(found.stdout)
    lines = text.stdout.splitlines()
    assert len(report["findings"]) == len(lines) - 1
    assert lines[-1] == f"{report['failed']} failed, {report['warnings']} warnings"
    keyring = next(f for f in report["findings"] if f["topic"] == "keyring")
    assert keyring["level"] == "warn" and "unencrypted" in keyring["message"]


def test_sessions_json_is_json_lines(two: dict[str, str]) -> None:
    guardctl(two, "check", "kubectl get pods")  # a check is not recorded
    guardctl(two, "delete", "ns", "prod")  # a denied run is
    rows = [json.loads(line) for line in guardctl(two, "sessions", "--json").stdout.splitlines()]
    assert [(r["decision"], r["exit_code"]) for r in rows] == [("deny", 11)]


# --------------------------------------------------------------------------- one-line errors


def _one_line_13(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 13, (proc.returncode, proc.stderr)
    assert proc.stderr.count("\n") == 1 and "internal error" not in proc.stderr, proc.stderr
    return proc.stderr


@pytest.mark.parametrize("backend", ["keyrings.alt.file.PlaintextKeyrin", "nosuch.Keyring"])
def test_a_misspelt_keyring_backend(two: dict[str, str], backend: str) -> None:
    env = {**two, "PYTHON_KEYRING_BACKEND": backend, "GUARDCTL_FORKSERVER": "0"}
    for args in (("creds", "list"), ("creds", "status"), ("creds", "remove", "beta", "--yes")):
        message = _one_line_13(guardctl(env, *args))
        assert f"PYTHON_KEYRING_BACKEND={backend} names no keyring backend" in message


@pytest.mark.parametrize("bus", [None, "unix:path=/nonexistent/bus"])
def test_a_desktop_keyring_without_dbus(two: dict[str, str], bus: str | None) -> None:
    env = {**two, "PYTHON_KEYRING_BACKEND": "keyring.backends.SecretService.Keyring",
           "GUARDCTL_FORKSERVER": "0"}
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    if bus is not None:
        env["DBUS_SESSION_BUS_ADDRESS"] = bus
    for args in (("creds", "list"), ("get", "pods")):
        assert "desktop session (D-Bus)" in _one_line_13(guardctl(env, *args))


def test_devserver_on_a_port_in_use(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        message = _one_line_13(guardctl(agent_environ(tmp_path), "devserver", "--port",
                                        str(port)))
    assert f"127.0.0.1:{port} is in use" in message and "--port" in message


def _without_openssl(tmp_path: Path) -> dict[str, str]:
    """PATH with python and kubectl, and no openssl."""
    env = agent_environ(tmp_path)
    folder = tmp_path / "bin"
    folder.mkdir()
    for program in filter(None, (shutil.which("kubectl"),)):
        (folder / "kubectl").symlink_to(program)
    env["PATH"] = str(folder)
    return env


def test_devserver_and_demo_without_openssl(tmp_path: Path) -> None:
    env = _without_openssl(tmp_path)
    for args in (("devserver",), ("demo", "--fast", "--no-replay")):
        assert "`openssl`" in _one_line_13(guardctl(env, *args))


# --------------------------------------------------------------------------- plaintext keyring


def _headless(tmp_path: Path, devserver: DevServer) -> tuple[dict[str, str], list[str]]:
    """A host whose only keyring is keyrings.alt's plaintext file: no D-Bus, no backend
    chosen; and the `creds import` arguments for the devserver."""
    env = agent_environ(tmp_path)
    for name in ("PYTHON_KEYRING_BACKEND", "DBUS_SESSION_BUS_ADDRESS"):
        env.pop(name, None)
    env.update(HOME=str(tmp_path / "home-dir"), XDG_CONFIG_HOME=str(tmp_path / "xdg-config"))
    admin = devserver.write_kubeconfig(tmp_path / "admin.kubeconfig")
    return env, ["creds", "import", "--kubeconfig", str(admin), "--service-account", SA]


def test_import_to_a_plaintext_keyring_needs_consent(tmp_path: Path,
                                                     devserver: DevServer) -> None:
    env, args = _headless(tmp_path, devserver)
    refused = _one_line_13(guardctl(env, *args))
    assert "unencrypted" in refused and "--allow-plaintext" in refused
    assert "python_keyring" in refused  # names the file
    assert not Path(env["GUARDCTL_CONFIG"]).exists()
    assert guardctl(env, *args, "--allow-plaintext").returncode == 0
    assert json.loads(guardctl(env, "creds", "list", "--json").stdout)[0]["keyring"] == (
        "keyrings.alt.file.PlaintextKeyring")
    doctor = guardctl(env, "doctor")
    assert any(line.startswith("warn  keyring:") and "unencrypted" in line
               for line in doctor.stdout.splitlines())


def test_import_to_a_plaintext_keyring_at_a_terminal(tmp_path: Path,
                                                     devserver: DevServer) -> None:
    env, args = _headless(tmp_path, devserver)
    for answer, imported in (("n", False), ("y", True)):
        status = answered(env, args, ["unencrypted", "Store the credential there anyway? [y/N]"],
                          answer)
        assert status == (0 if imported else 1)
        assert Path(env["GUARDCTL_CONFIG"]).exists() is imported


def test_a_chosen_plaintext_backend_is_consent(tmp_path: Path, devserver: DevServer) -> None:
    env, args = _headless(tmp_path, devserver)
    env["PYTHON_KEYRING_BACKEND"] = "keyrings.alt.file.PlaintextKeyring"
    assert guardctl(env, *args).returncode == 0


# --------------------------------------------------------------------------- uninstall


@pytest.fixture
def installed(tmp_path: Path, devserver: DevServer) -> Iterator[dict[str, str]]:
    """guardctl set up in a temporary HOME with the default folders: a context imported, a
    shim installed, a command run (state, cache, fork server), a Claude Code hook."""
    home = tmp_path / "home"
    home.mkdir()
    env = agent_environ(tmp_path)  # makes tmp_path/run, 0700
    runtime = Path(env["XDG_RUNTIME_DIR"])
    env = {k: v for k, v in env.items() if not k.startswith(("GUARDCTL_", "XDG_"))}
    env.update(HOME=str(home), XDG_RUNTIME_DIR=str(runtime))
    admin = devserver.write_kubeconfig(tmp_path / "admin.kubeconfig")
    assert guardctl(env, "creds", "import", "--kubeconfig", str(admin),
                    "--service-account", SA).returncode == 0
    assert guardctl(env, "shim", "install", str(home / "shim")).returncode == 0
    guardctl(env, "delete", "ns", "prod")  # denied, recorded
    (home / ".claude").mkdir()
    (home / ".claude" / "settings.json").write_text(
        '{"hooks": {"PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", '
        '"command": "guardctl hook claude-code"}]}]}}')
    yield env
    forkcontrol.stop_all(runtime)


def _guardctl_files(env: dict[str, str]) -> dict[str, bool]:
    home = Path(env["HOME"])
    keyring = home / ".local/share/python_keyring/keyring_pass.cfg"
    return {
        "shim": (home / "shim" / "kubectl").exists(),
        "config": (home / ".config/guardctl/config.yaml").exists(),
        "cache": (home / ".cache/guardctl").exists(),
        "state": (home / ".local/state/guardctl/audit.jsonl").exists(),
        "runtime": (Path(env["XDG_RUNTIME_DIR"]) / "guardctl").exists(),
        "credential": keyring.exists() and "credential_3a" in keyring.read_text(),
    }


def test_uninstall_lists_first_and_needs_a_yes(installed: dict[str, str]) -> None:
    before = _guardctl_files(installed)
    assert all(before.values()), before
    refused = guardctl(installed, "uninstall")
    assert refused.returncode == 2 and refused.stderr.strip().endswith("rerun with --yes")
    for word in ("shim", "config.yaml", "credential", ".cache/guardctl", "state folder",
                 "settings.json", "pipx uninstall"):
        assert word in refused.stdout, word
    assert _guardctl_files(installed) == before


def test_uninstall_removes_what_guardctl_wrote(installed: dict[str, str]) -> None:
    hook = Path(installed["HOME"]) / ".claude" / "settings.json"
    hook_text = hook.read_text()
    proc = guardctl(installed, "uninstall", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert not any(_guardctl_files(installed).values()), _guardctl_files(installed)
    assert hook.read_text() == hook_text  # never edited: the person wrote it
    assert "remove that hook from it yourself" in proc.stdout
    again = guardctl(installed, "uninstall")
    assert again.returncode == 0 and "nothing of its own to remove" in again.stdout


def test_uninstall_keep_state(installed: dict[str, str]) -> None:
    proc = guardctl(installed, "uninstall", "--yes", "--keep-state")
    assert proc.returncode == 0, proc.stderr
    left = _guardctl_files(installed)
    assert left.pop("state") and not any(left.values()), left
    assert "kept (--keep-state)" in proc.stdout
    assert guardctl(installed, "audit", "verify").returncode == 0


def test_uninstall_at_a_terminal(installed: dict[str, str]) -> None:
    for answer, removed in (("n", False), ("y", True)):
        status = answered(installed, ["uninstall"], ["Remove all of the above? [y/N]"], answer)
        assert status == (0 if removed else 1)
        assert _guardctl_files(installed)["config"] is not removed


def test_removing_every_context_keeps_the_other_settings(two: dict[str, str]) -> None:
    config = Path(two["GUARDCTL_CONFIG"])
    config.write_text(config.read_text() + "cast-max-size: 1MiB\nplugins:\n  tree: /bin/true\n")
    for name in ("alpha", "beta"):
        assert guardctl(two, "creds", "remove", name, "--yes").returncode == 0
    assert yaml.safe_load(config.read_text()) == {"plugins": {"tree": "/bin/true"},
                                                  "cast-max-size": "1MiB"}
