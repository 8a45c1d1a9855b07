"""`guardctl doctor` against temporary set-ups: one healthy, then one thing broken at a time."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import keyring
import keyring.errors
import pytest
from keyring.backend import KeyringBackend
from keyrings.alt.file import PlaintextKeyring

from guardctl import doctor
from guardctl.env import Environment
from guardctl.running.creds import import_credentials

KUBECONFIG = """\
apiVersion: v1
kind: Config
current-context: admin
clusters:
- name: dev
  cluster: {server: "https://127.0.0.1:6443"}
contexts:
- name: admin
  context: {cluster: dev, user: admin, namespace: dev}
users:
- name: admin
  user: {token: not-a-real-token}
"""


class MemoryKeyring(KeyringBackend):
    """A keyring that is not a plaintext file, for the healthy set-up."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.entries.pop((service, username), None)


class LockedKeyring(MemoryKeyring):
    def get_password(self, service: str, username: str) -> str | None:
        raise keyring.errors.KeyringLocked("locked")


def _script(folder: Path, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "kubectl"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def _version(version: str) -> str:
    return f"echo '{{\"clientVersion\":{{\"gitVersion\":\"{version}\"}}}}'"


def _kubectl_with_help(version: str, get_flags: str = "--watch=false") -> str:
    """A kubectl that answers `version` and a help of kubectl's shape: one command, `get`,
    whose options are `get_flags`; every other command has none."""
    return (
        'case "$*" in\n'
        f'  "version --client -o json") {_version(version)};;\n'
        "  --help) printf 'Basic Commands:\\n  get           Display resources\\n';;\n"
        f"  'get --help') printf 'Options:\\n    {get_flags}:\\n\\tA flag.\\n\\n';;\n"
        "  *) printf 'Usage:\\n  kubectl\\n';;\n"
        "esac"
    )


@pytest.fixture(autouse=True)
def memory_keyring() -> Iterator[MemoryKeyring]:
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(PlaintextKeyring())


@pytest.fixture
def healthy(tmp_path: Path) -> Environment:
    """Shim first on PATH, a working kubectl after it, a credential imported, state 0700."""
    shim = _script(tmp_path / "shim", 'exec guardctl "$@"')
    real = _script(tmp_path / "bin", _kubectl_with_help("v1.30.2"))
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    environ = {
        "PATH": f"{shim.parent}:{real.parent}:/usr/bin:/bin",
        "GUARDCTL_HOME": str(state),
        "GUARDCTL_CONFIG": str(tmp_path / "config" / "config.yaml"),
    }
    env = Environment(stdout=io.StringIO(), environ=environ, home=tmp_path / "home")
    import_credentials(env, str(kubeconfig), None, "guardctl/guardctl-agent", "1h")
    return env


def _run(env: Environment) -> tuple[int, list[str]]:
    code = doctor.run(env)
    assert isinstance(env.stdout, io.StringIO)
    return code, env.stdout.getvalue().splitlines()


def test_a_healthy_setup_passes(healthy: Environment) -> None:
    code, lines = _run(healthy)
    assert code == 0
    # the one warning: without a broker, the guarantees are advisory, and doctor says so
    assert lines[-1] == "0 failed, 1 warnings"
    assert lines[0].startswith("warn  mode: same-user mode") and "advisory" in lines[0]
    body = lines[1:-1]
    assert all(line.startswith("ok ") for line in body), body
    topics = [line.split()[1].rstrip(":") for line in body]
    assert topics == ["kubectl", "kubectl-flags", "keyring", "credentials", "credentials",
                      "plugins", "detectors", "rules", "state", "state", "audit", "shim"]
    assert "(v1.30.2)" in body[0]
    assert "agent token: none cached" in body[4]
    assert "not-a-real-token" not in "\n".join(lines)


Breakage = Callable[[Environment, Path], None]


def _set(**values: str) -> Breakage:
    def apply(env: Environment, _tmp: Path) -> None:
        env.environ = {**env.environ, **values}

    return apply


def _path_without_kubectl(env: Environment, tmp: Path) -> None:
    env.environ = {**env.environ, "PATH": str(tmp / "empty")}


def _kubectl(body: str) -> Breakage:
    def apply(env: Environment, tmp: Path) -> None:
        _script(tmp / "bin", body)

    return apply


def _real_kubectl_first(env: Environment, tmp: Path) -> None:
    env.environ = {**env.environ, "PATH": f"{tmp / 'bin'}:{tmp / 'shim'}"}


def _keyring(backend: type[KeyringBackend]) -> Breakage:
    def apply(_env: Environment, _tmp: Path) -> None:
        keyring.set_keyring(backend())

    return apply


def _plaintext_keyring(_env: Environment, _tmp: Path) -> None:
    entries = keyring.get_keyring().entries  # type: ignore[attr-defined]
    plaintext = PlaintextKeyring()
    for (service, name), value in entries.items():
        plaintext.set_password(service, name, value)
    keyring.set_keyring(plaintext)


def _state(change: Callable[[Path], object]) -> Breakage:
    def apply(env: Environment, _tmp: Path) -> None:
        change(env.state_dir)

    return apply


def _replace_with_file(path: Path) -> None:
    path.rmdir()
    path.write_text("not a folder")


def _readable_audit_key(state: Path) -> None:
    from guardctl.recording.audit import AuditLog, log_path
    from guardctl.recording.auditkey import key_path

    AuditLog(log_path(state)).start(session="s", argv=["kubectl", "version"])
    key_path(log_path(state)).chmod(0o644)


def _bad_rules(env: Environment, tmp: Path) -> None:
    rules = tmp / "bad.yaml"
    rules.write_text("- id: oops\n  action: perhaps\n  reason: x\n  match: get pods\n")
    env.environ = {**env.environ, "GUARDCTL_RULES": str(rules)}


def _config_line(line: str) -> Breakage:
    def add(env: Environment, _tmp: Path) -> None:
        with open(env.config_path, "a") as config:
            config.write(line + "\n")

    return add


def _gitleaks(text: str) -> Breakage:
    def add(env: Environment, tmp: Path) -> None:
        rules = tmp / "gitleaks.toml"
        rules.write_text(text)
        _config_line(f"detectors: [{rules}]")(env, tmp)

    return add


@pytest.mark.parametrize(
    ("breakage", "level", "topic", "text", "code"),
    [
        (_path_without_kubectl, "fail", "kubectl", "kubectl not found", 1),
        (_path_without_kubectl, "warn", "shim", "no kubectl on PATH", 1),
        (_set(GUARDCTL_KUBECTL="/nonexistent/kubectl"), "fail", "kubectl", "not found", 1),
        (_kubectl(_version("v1.21.0")), "fail", "kubectl", "needs 1.24 or newer", 1),
        (_kubectl("exit 3"), "fail", "kubectl", "exited with 3", 1),
        (_kubectl("echo not json"), "fail", "kubectl", "does not answer", 1),
        (_real_kubectl_first, "warn", "shim", "guardctl shim install DIR", 0),
        # a newer kubectl's flag: lines that use it will wait for a human, and doctor says so
        (_kubectl(_kubectl_with_help("v1.40.0", "--frobnicate=false")), "warn", "kubectl-flags",
         "`kubectl get --frobnicate`", 0),
        (_kubectl(_version("v1.30.2")), "warn", "kubectl-flags", "lists no commands", 0),
        (_keyring(LockedKeyring), "fail", "keyring", "the keyring is locked", 1),
        (_plaintext_keyring, "warn", "keyring", "unencrypted", 0),
        (_keyring(MemoryKeyring), "fail", "credentials", "no credential for context 'admin'", 1),
        (_set(GUARDCTL_CONFIG="/nonexistent/config.yaml"), "fail", "credentials",
         "guardctl creds import", 1),
        (_bad_rules, "fail", "rules", "bad.yaml", 1),
        (_config_line("plugins: {tree: /nonexistent/kubectl-tree}"), "fail", "plugins",
         "tree: /nonexistent/kubectl-tree is not a program", 1),
        (_config_line("detectors: [/nonexistent/gitleaks.toml]"), "fail", "detectors",
         "cannot read the gitleaks rules /nonexistent/gitleaks.toml", 1),
        (_gitleaks('[[rules]]\nid = "u"\nregex = \'\'\'(?U)a+\'\'\'\n'), "warn", "detectors",
         "left out:", 0),
        (_state(lambda p: p.chmod(0o755)), "warn", "state", "chmod 700", 0),
        (_state(lambda p: p.rmdir()), "ok", "state", "created on the first run", 0),
        (_state(_replace_with_file), "fail", "state", "not a folder", 1),
        (_state(lambda p: (p / "audit.jsonl").write_text("{broken\n")), "fail", "audit",
         "changed or damaged", 1),
        (_state(_readable_audit_key), "fail", "audit", "can forge records", 1),
    ],
)
def test_each_problem_is_named(
    healthy: Environment, tmp_path: Path, breakage: Breakage, level: str, topic: str,
    text: str, code: int,
) -> None:
    breakage(healthy, tmp_path)
    got, lines = _run(healthy)
    matching = [ln for ln in lines if ln.startswith(f"{level} ") and f" {topic}:" in ln]
    assert any(text in ln for ln in matching), lines
    assert got == code, lines


def test_an_unwritable_state_folder_fails(healthy: Environment) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    healthy.state_dir.chmod(0o500)
    try:
        code, lines = _run(healthy)
    finally:
        healthy.state_dir.chmod(0o700)
    assert code == 1
    assert any(ln.startswith("fail  state:") and "not writable" in ln for ln in lines)


@pytest.mark.parametrize(
    ("version", "minor"),
    [("v1.32.4", 32), ("v1.24.0-dispatcher", 24), ("v1.9+", 9), ("v2", None), ("garbage", None)],
)
def test_minor_version(version: str, minor: int | None) -> None:
    assert doctor._minor(version) == minor


def test_the_installed_kubectl_is_compared_with_the_table(tmp_path: Path) -> None:
    # the real kubectl's own help, walked once: the table was made from a kubectl, so one
    # of that version has nothing guardctl does not know
    import shutil

    from guardctl.firewall.flagtable import flag_table

    kubectl = shutil.which("kubectl")
    assert kubectl is not None
    env = Environment(environ={"XDG_CACHE_HOME": str(tmp_path / "cache")}, home=tmp_path)
    unknown = doctor.unknown_inputs(kubectl, env)
    if doctor.kubectl_version(kubectl) == flag_table().version:
        assert unknown == []
    assert doctor.unknown_inputs(kubectl, env) == unknown  # cached, and the same
