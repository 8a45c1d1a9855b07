"""Credentials: import into the keyring, mint with the real kubectl against the devserver."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keyring
import keyring.backends.fail
import keyring.errors
import pytest
import yaml
from keyring.backend import KeyringBackend
from keyrings.alt.file import PlaintextKeyring

from guardctl.config import Config, load_config, save_config
from guardctl.devserver import DevServer
from guardctl.env import Environment
from guardctl.errors import UnsafeError, UsageError
from guardctl.running import tokencache
from guardctl.running.creds import (
    Vault,
    credential_entry,
    import_advice,
    import_credentials,
    kernel_cache,
    load_credential,
    mint_token,
    require_config,
    stanza_secrets,
    status,
    token_entry,
)
from guardctl.running.kubeconfig import PREFIX, temp_kubeconfig
from guardctl.running.tokencache import Token

SA = "guardctl/guardctl-agent"
SA_USER = "system:serviceaccount:guardctl:guardctl-agent"
TOKEN_PATH = "/api/v1/namespaces/guardctl/serviceaccounts/guardctl-agent/token"
KUBECTLS = [k for k in ("/usr/bin/kubectl", "/usr/lib/google-cloud-sdk/bin/kubectl.1.27")
            if os.path.exists(k)]
TIMEOUT = 30


@pytest.fixture(scope="module")
def server() -> Iterator[DevServer]:
    with DevServer() as devserver:
        yield devserver


@pytest.fixture(autouse=True)
def file_keyring() -> Iterator[None]:
    """A fresh plaintext file keyring (under the per-test XDG_DATA_HOME of conftest)."""
    keyring.set_keyring(PlaintextKeyring())
    yield
    keyring.set_keyring(PlaintextKeyring())


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Environment]:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    environ = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "KUBECONFIG": ""}
    environment = Environment(environ=environ, home=tmp_path / "home")
    yield environment
    _forget_kernel_token(environment)


def _forget_kernel_token(env: Environment) -> None:
    """Kernel keyring entries outlive the test (until their timeout): drop this test's, so
    a uid's key quota is not used up by a test run."""
    config = load_config(env.config_path)
    fast = kernel_cache(env, config) if config is not None else None
    if fast is not None:
        fast.drop()


@pytest.fixture
def kubeconfig(server: DevServer, tmp_path: Path) -> Path:
    return server.write_kubeconfig(tmp_path / "kubeconfig", namespace="dev")


def _import(env: Environment, kubeconfig: Path, ttl: str = "10m") -> Config:
    return import_credentials(env, str(kubeconfig), None, SA, ttl)


def _token_requests(server: DevServer) -> list[str]:
    return [user for method, path, user in server.requests
            if (method, path) == ("POST", TOKEN_PATH)]


# --------------------------------------------------------------------------- import


def test_import_moves_the_token_into_the_keyring(env: Environment, kubeconfig: Path,
                                                 server: DevServer) -> None:
    config = _import(env, kubeconfig)
    assert (config.context, config.cluster, config.user) == ("guardctl-dev",) * 3
    assert (config.server, config.namespace, config.service_account) == (server.url, "dev", SA)
    assert config.credential == "token"
    assert base64.b64decode(config.certificate_authority_data) == server.ca_pem
    assert load_config(env.config_path) == config
    assert server.admin_token not in env.config_path.read_text()
    stored = keyring.get_password("guardctl", credential_entry(config))
    assert stored is not None and json.loads(stored) == {"token": server.admin_token}
    # the user's kubeconfig is only read
    assert server.admin_token in kubeconfig.read_text()
    advice = import_advice(config, str(kubeconfig), env)
    assert any("kubectl config unset users.guardctl-dev" in line for line in advice)
    assert not any(server.admin_token in line for line in advice)


def test_reimport_keeps_the_broker_line(env: Environment, kubeconfig: Path) -> None:
    env.config_path.parent.mkdir(parents=True, exist_ok=True)
    env.config_path.write_text("broker: /run/guardctl/broker.sock\n")
    config = _import(env, kubeconfig)
    assert config.broker == "/run/guardctl/broker.sock"
    assert load_config(env.config_path) == config


def test_import_reads_kubeconfig_from_the_environment(env: Environment, kubeconfig: Path,
                                                      tmp_path: Path) -> None:
    environ = {**env.environ, "KUBECONFIG": f"{kubeconfig}:{tmp_path / 'other'}"}
    config = import_credentials(Environment(environ=environ, home=env.home), None, None, SA, "1h")
    assert config.context == "guardctl-dev"


def _doc(user: dict[str, Any], cluster: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": cluster or {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
    }


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("user", "kind", "stored"),
    [
        ({"token": "abc123token"}, "token", {"token": "abc123token"}),
        ({"token-file": "files/token"}, "token", {"token": "file-token-value"}),
        ({"client-certificate-data": "Q0VSVA==", "client-key-data": "S0VZ"},
         "client-certificate", {"client-certificate-data": "Q0VSVA==", "client-key-data": "S0VZ"}),
        ({"client-certificate": "files/cert.pem", "client-key": "files/key.pem"},
         "client-certificate",
         {"client-certificate-data": _b64("CERT\n"), "client-key-data": _b64("KEY\n")}),
        ({"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "./bin/plug"}},
         "exec", {"exec": {"apiVersion": "client.authentication.k8s.io/v1",
                           "command": "{base}/bin/plug"}}),
        ({"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "aws"}},
         "exec", {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "aws"}}),
    ],
    ids=["token", "token-file", "cert-data", "cert-files", "exec-relative", "exec-on-path"],
)
def test_import_credential_kinds(env: Environment, tmp_path: Path, user: dict[str, Any],
                                 kind: str, stored: dict[str, Any]) -> None:
    files = tmp_path / "files"
    files.mkdir()
    (files / "token").write_text("file-token-value\n")
    (files / "cert.pem").write_text("CERT\n")
    (files / "key.pem").write_text("KEY\n")
    path = tmp_path / "kc"
    path.write_text(yaml.safe_dump(_doc(user)))
    config = import_credentials(env, str(path), None, SA, "1h")
    assert config.credential == kind
    raw = keyring.get_password("guardctl", credential_entry(config))
    assert raw is not None
    assert json.loads(raw) == json.loads(json.dumps(stored).replace("{base}", str(tmp_path)))
    assert "token-value" not in env.config_path.read_text()


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (_doc({"auth-provider": {"name": "gcp"}}), "uses 'auth-provider'"),
        (_doc({"username": "u", "password": "p"}), "uses 'username'"),
        (_doc({"token": "t", "exec": {"command": "x"}}),
         r"exactly one credential \(found: exec, token"),
        (_doc({}), r"exactly one credential \(found: none"),
        (_doc({"token-file": "missing"}), "cannot read"),
        (_doc({"client-certificate-data": "Q0VSVA=="}), "has no client-key or client-key-data"),
        (_doc({"token": "t"}, {"server": "https://x", "insecure-skip-tls-verify": True}),
         "skips TLS verification"),
        (_doc({"token": "t"}, {"server": "https://x", "proxy-url": "http://p"}), "'proxy-url'"),
        (_doc({"token": "t"}, {"certificate-authority-data": "Q0E="}), "server: expected"),
        ({**_doc({"token": "t"}), "current-context": "nope"}, "no context named 'nope'"),
        ({**_doc({"token": "t"}), "users": []}, "no user named 'u'"),
        ("just a string", "expected a mapping"),
    ],
)
def test_import_refuses_what_it_cannot_carry(env: Environment, tmp_path: Path, doc: Any,
                                             message: str) -> None:
    path = tmp_path / "kc"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(UsageError, match=message):
        import_credentials(env, str(path), None, SA, "1h")
    assert not env.config_path.exists()


@pytest.mark.parametrize(("service_account", "ttl"), [("agent", "1h"), (SA, "5m"), (SA, "1d")])
def test_import_checks_arguments_before_storing(env: Environment, kubeconfig: Path,
                                                service_account: str, ttl: str) -> None:
    with pytest.raises(UsageError):
        import_credentials(env, str(kubeconfig), None, service_account, ttl)
    assert keyring.get_password("guardctl", "credential:guardctl-dev") is None


# --------------------------------------------------------------------------- minting


@pytest.mark.parametrize("kubectl", KUBECTLS)
def test_mint_once_then_reuse(env: Environment, kubeconfig: Path, server: DevServer,
                              kubectl: str) -> None:
    env.environ = {**env.environ, "GUARDCTL_KUBECTL": kubectl}
    config = _import(env, kubeconfig)
    server.clear_requests()
    first = mint_token(env, config)
    second = mint_token(env, config)
    assert first == second
    assert _token_requests(server) == ["admin"]
    assert 590 <= first.expires_at - first.issued_at <= 600
    # no private kubeconfig left behind; the token is in no file guardctl wrote
    assert not [p for p in Path(env.environ["XDG_RUNTIME_DIR"]).iterdir()
                if p.name.startswith(PREFIX)]
    for path in [env.config_path, *env.state_dir.rglob("*")]:
        if path.is_file():
            assert first.value not in path.read_text()
    # the token is cached in the keyring, in a file of its own beside the credential's (so a
    # run never rewrites that), and it authenticates as the ServiceAccount
    tokens = Vault("guardctl").tokens()
    assert tokens.file is not None and tokens.file.name == "keyring_pass.guardctl-tokens.cfg"
    assert first.value in (tokens.get(token_entry(config)) or "")
    assert keyring.get_password("guardctl", token_entry(config)) is None
    _kubectl_get_pods(env, config, first.value, kubectl)
    assert server.requests[-1][2] == SA_USER


def test_a_token_in_the_kernel_keyring_needs_no_os_keyring(env: Environment, kubeconfig: Path,
                                                           server: DevServer) -> None:
    config = _import(env, kubeconfig)
    first = mint_token(env, config)
    keyring.set_keyring(keyring.backends.fail.Keyring())
    server.clear_requests()
    assert mint_token(env, config) == first
    assert _token_requests(server) == []


def test_the_os_keyring_refills_the_kernel_keyring(env: Environment, kubeconfig: Path,
                                                   server: DevServer) -> None:
    config = _import(env, kubeconfig)
    first = mint_token(env, config)
    fast = kernel_cache(env, config)
    assert fast is not None and fast.load() == first
    fast.drop()
    server.clear_requests()
    assert mint_token(env, config) == first  # from the OS keyring
    assert _token_requests(server) == []
    assert fast.load() == first


def test_without_the_kernel_keyring_the_os_keyring_caches(
    env: Environment, kubeconfig: Path, server: DevServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tokencache, "LIBRARY", "libkeyutils-not-here.so.1")
    tokencache.kernel_keyring.cache_clear()
    try:
        config = _import(env, kubeconfig)
        server.clear_requests()
        first = mint_token(env, config)
        assert mint_token(env, config) == first
        assert _token_requests(server) == ["admin"]
        assert "cached in the OS keyring" in list(status(env))[-1]
    finally:
        monkeypatch.undo()
        tokencache.kernel_keyring.cache_clear()


def test_a_runtime_folder_others_may_enter_gets_no_mint_lock(env: Environment, kubeconfig: Path,
                                                             server: DevServer) -> None:
    """The mint lock is for one process at a time to mint; where guardctl's runtime folder is
    not private it is not used, and minting still works."""
    folder = Path(env.environ["XDG_RUNTIME_DIR"]) / "guardctl"
    folder.mkdir()
    folder.chmod(0o755)
    config = _import(env, kubeconfig)
    server.clear_requests()
    assert mint_token(env, config) == mint_token(env, config)
    assert _token_requests(server) == ["admin"]
    assert list(folder.iterdir()) == []


def _kubectl_get_pods(env: Environment, config: Config, token: str, kubectl: str) -> None:
    with temp_kubeconfig(env, config.server, config.certificate_authority_data, token,
                         config.namespace) as path:
        result = subprocess.run([kubectl, "--kubeconfig", str(path), "get", "pods"],
                                capture_output=True, timeout=TIMEOUT, check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("elapsed", "minted"), [(0.5, 1), (0.79, 1), (0.81, 2), (1.5, 2)])
def test_refresh_when_less_than_a_fifth_is_left(env: Environment, kubeconfig: Path,
                                                server: DevServer, elapsed: float,
                                                minted: int) -> None:
    config = _import(env, kubeconfig)
    server.clear_requests()
    start = time.time()
    first = mint_token(env, config, clock=lambda: start)
    later = mint_token(env, config, clock=lambda: start + elapsed * config.ttl_seconds)
    assert len(_token_requests(server)) == minted
    assert (later == first) == (minted == 1)


def test_reimport_drops_the_cached_token(env: Environment, kubeconfig: Path,
                                         server: DevServer) -> None:
    config = _import(env, kubeconfig)
    mint_token(env, config)
    server.clear_requests()
    config = _import(env, kubeconfig)
    mint_token(env, config)
    assert len(_token_requests(server)) == 1


def test_exec_plugin_credential_mints(env: Environment, tmp_path: Path,
                                      server: DevServer) -> None:
    plugin = tmp_path / "bin" / "plugin"
    plugin.parent.mkdir()
    plugin.write_text(
        f"#!{sys.executable}\nimport json, os\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1',"
        " 'kind': 'ExecCredential', 'status': {'token': os.environ['ADMIN_TOKEN']}}))\n"
    )
    plugin.chmod(0o755)
    doc = server.kubeconfig()
    doc["users"][0]["user"] = {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1", "command": "./bin/plugin",
        "env": [{"name": "ADMIN_TOKEN", "value": server.admin_token}],
        "interactiveMode": "Never",
    }}
    path = tmp_path / "kc"
    path.write_text(yaml.safe_dump(doc))
    config = import_credentials(env, str(path), None, SA, "1h")
    server.clear_requests()
    token = mint_token(env, config)
    assert _token_requests(server) == ["admin"]
    assert _masked_by(token, server.admin_token)


def _masked_by(token: Token, secret: str) -> bool:
    """Whether kubectl output holding `secret` comes out masked with this token's digests."""
    from guardctl.masking.detectors import default_detectors
    from guardctl.masking.mask import mask_text

    text = f"note: {secret}\nvalue: {_b64(secret)}\n"
    masked = mask_text(text, default_detectors(), digests=token.mask_digests)
    return secret not in masked and _b64(secret) not in masked and "note: " in masked


def test_a_token_carries_digests_of_the_secrets_to_mask(env: Environment, kubeconfig: Path,
                                                        server: DevServer) -> None:
    config = _import(env, kubeconfig)
    token = mint_token(env, config)
    assert _masked_by(token, server.admin_token)
    assert not _masked_by(token, "an-ordinary-value-of-the-same-shape-0123456789")
    assert token.value not in repr(token) and server.admin_token not in repr(token)
    # the kernel keyring, readable with a bare `keyctl print`, never holds the credential
    fast = kernel_cache(env, config)
    keyring_ = tokencache.kernel_keyring()
    assert fast is not None and keyring_ is not None
    payload = keyring_.get(fast.name)
    assert payload is not None and token.value.encode() in payload
    assert server.admin_token.encode() not in payload


def test_secret_values_of_a_client_key(env: Environment, tmp_path: Path) -> None:
    key = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkey1line\nAoGBAKey2line\n" \
          "-----END EC PRIVATE KEY-----\n"
    path = tmp_path / "kc"
    path.write_text(yaml.safe_dump(_doc({"client-certificate-data": "Q0VSVA==",
                                         "client-key-data": _b64(key)})))
    config = import_credentials(env, str(path), None, SA, "1h")
    assert stanza_secrets(config.credential, load_credential(config)) == [
        _b64(key), "MHcCAQEEIBkey1line", "AoGBAKey2line"]


# --------------------------------------------------------------------------- failing closed


def _one_line_unsafe(err: pytest.ExceptionInfo[UnsafeError], *, without: str = "") -> str:
    message = str(err.value)
    assert err.value.exit_status == 13
    assert "\n" not in message
    assert not without or without not in message
    return message


def test_refused_credential(env: Environment, tmp_path: Path, server: DevServer) -> None:
    path = server.write_kubeconfig(tmp_path / "bogus", token="bogus-token-value")
    config = _import(env, path)
    with pytest.raises(UnsafeError) as err:
        mint_token(env, config)
    message = _one_line_unsafe(err, without="bogus-token-value")
    assert message == (
        "the stored credential for context 'guardctl-dev' was refused (expired or revoked): "
        f"re-import it with `guardctl creds import --context guardctl-dev --service-account {SA}`"
    )


def test_expired_cached_token_is_not_used(env: Environment, kubeconfig: Path,
                                          server: DevServer) -> None:
    config = _import(env, kubeconfig)
    start = time.time()
    first = mint_token(env, config, clock=lambda: start - config.ttl_seconds)
    second = mint_token(env, config, clock=lambda: start)
    assert first != second


@pytest.mark.parametrize(
    ("stderr", "message"),
    [
        ("error: failed to create token: Unauthorized", "was refused (expired or revoked)"),
        ('error: failed to create token: serviceaccounts "guardctl-agent" is forbidden: User '
         '"bob" cannot create resource', "may not mint tokens for guardctl/guardctl-agent"),
        ('error: failed to create token: serviceaccounts "guardctl-agent" not found',
         "ServiceAccount guardctl/guardctl-agent was not found"),
        ("\nerror: exec: executable aws not found\nmore", "failed: error: exec: executable aws"),
        ("error: token admin-secret-token leaked",
         "kubectl create token failed: error: token *** leaked"),
    ],
)
def test_kubectl_errors_become_one_line(env: Environment, kubeconfig: Path, tmp_path: Path,
                                        stderr: str, message: str) -> None:
    config = _import(env, kubeconfig)
    keyring.set_password("guardctl", credential_entry(config),
                         json.dumps({"token": "admin-secret-token"}))
    # the script must not name guardctl itself, or find_kubectl takes it for a shim
    (tmp_path / "stderr.txt").write_text(stderr)
    fake = tmp_path / "fake-kubectl"
    fake.write_text(f"#!/bin/sh\ncat {tmp_path / 'stderr.txt'} >&2\nexit 1\n")
    fake.chmod(0o755)
    env.environ = {**env.environ, "GUARDCTL_KUBECTL": str(fake)}
    with pytest.raises(UnsafeError) as err:
        mint_token(env, config)
    assert message in _one_line_unsafe(err, without="admin-secret-token")


def test_no_config(env: Environment) -> None:
    with pytest.raises(UnsafeError) as err:
        require_config(env)
    assert _one_line_unsafe(err) == (
        "no credentials: run `guardctl creds import --service-account NS/NAME`")


def _saved_config(env: Environment, server: DevServer) -> Config:
    config = Config.of(context="ctx", cluster="k", user="u", server=server.url,
                    certificate_authority_data="", namespace="", service_account=SA,
                    credential="token", token_ttl="1h")
    save_config(env.config_path, config)
    return require_config(env)


def test_empty_keyring(env: Environment, server: DevServer) -> None:
    with pytest.raises(UnsafeError, match="no credential for context 'ctx' in the keyring"):
        mint_token(env, _saved_config(env, server))


def test_damaged_credential(env: Environment, server: DevServer) -> None:
    config = _saved_config(env, server)
    keyring.set_password("guardctl", credential_entry(config), '{"exec": {}}')
    with pytest.raises(UnsafeError, match="is damaged"):
        mint_token(env, config)


class LockedKeyring(KeyringBackend):
    priority = 1

    def get_password(self, service: str, username: str) -> str | None:
        raise keyring.errors.KeyringLocked("locked")

    def set_password(self, service: str, username: str, password: str) -> None:
        raise keyring.errors.KeyringLocked("locked")

    def delete_password(self, service: str, username: str) -> None:
        raise keyring.errors.KeyringLocked("locked")


@pytest.mark.parametrize(
    ("backend", "message"),
    [
        (LockedKeyring, "^the keyring is locked: unlock it"),
        (keyring.backends.fail.Keyring, "^no usable keyring"),
    ],
)
def test_keyring_unavailable(env: Environment, server: DevServer, kubeconfig: Path,
                             backend: type[KeyringBackend], message: str) -> None:
    config = _saved_config(env, server)
    keyring.set_keyring(backend())
    with pytest.raises(UnsafeError, match=message) as err:
        mint_token(env, config)
    _one_line_unsafe(err)
    with pytest.raises(UnsafeError, match=message):
        _import(env, kubeconfig)


def test_kubectl_missing(env: Environment, kubeconfig: Path) -> None:
    config = _import(env, kubeconfig)
    env.environ = {**env.environ, "GUARDCTL_KUBECTL": "/nonexistent/kubectl"}
    with pytest.raises(UnsafeError, match="^kubectl not found: install kubectl or set "
                                          "GUARDCTL_KUBECTL$"):
        mint_token(env, config)


# --------------------------------------------------------------------------- status


def test_status_never_shows_secrets(env: Environment, kubeconfig: Path,
                                    server: DevServer) -> None:
    assert next(status(env)).startswith("config: none at ")
    config = _import(env, kubeconfig)
    before = list(status(env))
    assert f"server: {server.url}" in before
    assert f"service account: {SA} (tokens last 10m)" in before
    assert "credential: token, present" in before
    assert "agent token: none cached (one is minted on the next run)" in before
    token = mint_token(env, config)
    after = "\n".join(status(env))
    assert "m left), cached in the kernel keyring" in after and "agent token: expires " in after
    assert token.value not in after and server.admin_token not in after
    keyring.set_keyring(LockedKeyring())  # type: ignore[no-untyped-call]
    with pytest.raises(UnsafeError, match="^the keyring is locked"):
        list(status(env))
