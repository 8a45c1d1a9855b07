"""Isolation for every test: a temporary guardctl home and config, no colour, no user rules."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "guardctl-home"
    home.mkdir()
    monkeypatch.setenv("GUARDCTL_HOME", str(home))
    monkeypatch.setenv("GUARDCTL_CONFIG", str(tmp_path / "config" / "config.yaml"))
    monkeypatch.delenv("GUARDCTL_RULES", raising=False)
    monkeypatch.delenv("GUARDCTL_SESSION", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyrings.alt.file.PlaintextKeyring")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return home
