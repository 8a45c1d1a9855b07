"""The token cache in the kernel's user keyring: the real keyring of this machine, no fakes."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_setup import drop_kernel_token

from guardctl.running import tokencache
from guardctl.running.tokencache import KernelCache, KernelKeyring, Token, description

SERVER = "https://127.0.0.1:6443"
SA = "guardctl/guardctl-agent"
SETTINGS = ("ctx", "cluster", "user", SERVER, "", "dev", SA, "token", "1h", "guardctl")

KEYRING = tokencache.kernel_keyring()
pytestmark = pytest.mark.skipif(KEYRING is None, reason="no kernel keyring (libkeyutils.so.1)")


def _keys() -> KernelKeyring:
    assert KEYRING is not None
    return KEYRING


def _time_left(name: str) -> str:
    """The timeout column of key `name` in /proc/keys: "perm", "expd", "11m", ..."""
    line = next(ln for ln in Path("/proc/keys").read_text().splitlines() if f" {name}: " in ln)
    return line.split()[3]


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[KernelCache]:
    name = description(tmp_path / "config.yaml", SETTINGS)
    entry = KernelCache(_keys(), name, SERVER, SA)
    yield entry
    entry.drop()


def _token(now: float, life: float = 3600.0, age: float = 0.0) -> Token:
    issued = now - age
    return Token("eyJ.agent-token.sig", issued + life, issued, (f"12:{'ab' * 32}",))


def test_save_then_load(cache: KernelCache) -> None:
    now = time.time()
    token = _token(now)
    assert cache.save(token, now)
    assert cache.load() == token


def test_the_key_lives_as_long_as_the_token_is_reusable(cache: KernelCache) -> None:
    now = time.time()
    # life 1000 s, 100 s gone: reusable until 200 s (a fifth) are left, i.e. for 700 s more
    assert cache.save(_token(now, life=1000.0, age=100.0), now)
    assert _time_left(cache.name) == "11m"  # /proc/keys shows whole minutes


def test_the_kernel_drops_the_key_at_its_timeout(cache: KernelCache) -> None:
    now = time.time()
    # reusable for 1.5 s more: the key gets a one-second timeout
    token = Token("t", now + 3.5, now - 6.5)
    assert cache.save(token, now)
    assert cache.load() == token
    time.sleep(2.5)
    assert cache.load() is None


def test_a_token_that_is_not_reusable_is_not_kept(cache: KernelCache) -> None:
    now = time.time()
    assert not cache.save(_token(now, life=1000.0, age=850.0), now)
    assert cache.load() is None


def test_a_new_token_replaces_the_old_one(cache: KernelCache) -> None:
    now = time.time()
    cache.save(_token(now), now)
    newer = _token(now)._replace(value="eyJ.newer.sig")
    assert cache.save(newer, now)
    assert cache.load() == newer


def test_drop(cache: KernelCache) -> None:
    now = time.time()
    cache.save(_token(now), now)
    cache.drop()
    assert cache.load() is None
    cache.drop()  # nothing there: no error


@pytest.mark.parametrize(
    ("path", "settings"),
    [
        ("other/config.yaml", SETTINGS),
        ("config.yaml", SETTINGS[:3] + ("https://127.0.0.1:6444",) + SETTINGS[4:]),
        ("config.yaml", ("other-ctx",) + SETTINGS[1:]),
        ("config.yaml", SETTINGS[:6] + ("guardctl/other",) + SETTINGS[7:]),
        ("config.yaml", SETTINGS[:-1] + ("other-service",)),
    ],
    ids=["config-path", "server", "context", "service-account", "keyring-service"],
)
def test_configs_never_share_a_token(cache: KernelCache, tmp_path: Path, path: str,
                                     settings: tuple[str, ...]) -> None:
    now = time.time()
    cache.save(_token(now), now)
    other = KernelCache(_keys(), description(tmp_path / path, settings), settings[3],
                        settings[6])
    assert other.name != cache.name
    assert other.load() is None


def test_description_is_stable_and_names_no_path(tmp_path: Path) -> None:
    first = description(tmp_path / "config.yaml", SETTINGS)
    assert first == description(tmp_path / "config.yaml", list(SETTINGS))
    assert first.startswith("guardctl:token:") and str(tmp_path) not in first


@pytest.mark.parametrize(
    "raw",
    [
        None, b"", b"not json", b"[]",
        b'{"token": "t", "expires_at": 2, "issued_at": 1, "mask_digests": [],'
        b' "server": "https://elsewhere", "service_account": "guardctl/guardctl-agent"}',
        b'{"token": "t", "expires_at": 2, "issued_at": 1, "mask_digests": [],'
        b' "server": "https://127.0.0.1:6443", "service_account": "other/sa"}',
        # without digests (written before they were kept) its credential would go unmasked
        b'{"token": "t", "expires_at": 2, "issued_at": 1,'
        b' "server": "https://127.0.0.1:6443", "service_account": "guardctl/guardctl-agent"}',
        b'{"token": "t", "expires_at": "soon", "issued_at": 1, "mask_digests": [],'
        b' "server": "https://127.0.0.1:6443", "service_account": "guardctl/guardctl-agent"}',
    ],
)
def test_decode_refuses_what_is_not_this_configs_token(raw: bytes | None) -> None:
    assert tokencache.decode(raw, SERVER, SA) is None


def test_encode_decode_round_trip() -> None:
    token = _token(time.time())
    assert tokencache.decode(tokencache.encode(token, SERVER, SA), SERVER, SA) == token


@pytest.mark.parametrize(("age", "fresh"), [(0, True), (2879, True), (2881, False), (-5, False)])
def test_fresh_while_a_fifth_of_the_life_is_left(age: float, fresh: bool) -> None:
    now = time.time()
    assert _token(now, life=3600.0, age=age).fresh(now) is fresh


def test_without_libkeyutils_there_is_no_kernel_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokencache, "LIBRARY", "libkeyutils-not-here.so.1")
    tokencache.kernel_keyring.cache_clear()
    try:
        assert tokencache.kernel_keyring() is None
    finally:
        monkeypatch.undo()
        tokencache.kernel_keyring.cache_clear()
    assert tokencache.kernel_keyring() is not None


# --------------------------------------------------------------------------- a whole run


def _guardctl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "guardctl", *args], env=env,
                          capture_output=True, timeout=60, check=False)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_a_cached_token_needs_no_os_keyring(agent_env: dict[str, str], tmp_path: Path) -> None:
    """The second run finds the token in the kernel keyring: it succeeds with an OS keyring
    backend that fails every call, so it read neither the token nor the long-lived credential
    from there."""
    try:
        first = _guardctl(agent_env, "get", "pods", "-n", "dev")  # mints, caches in both
        assert first.returncode == 0, first.stderr
        failing = {**agent_env, "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
        second = _guardctl(failing, "get", "pods", "-n", "dev")
        assert second.returncode == 0, second.stderr
        assert second.stdout == first.stdout
        # the same setup under another config path has no kernel entry: it needs the OS
        # keyring, which fails
        other = tmp_path / "config.yaml"
        other.write_bytes(Path(agent_env["GUARDCTL_CONFIG"]).read_bytes())
        third = _guardctl({**failing, "GUARDCTL_CONFIG": str(other)}, "get", "pods", "-n", "dev")
        assert third.returncode == 13
        assert third.stderr.decode().startswith("guardctl: no usable keyring")
    finally:
        drop_kernel_token(agent_env)
