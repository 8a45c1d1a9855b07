"""`guardctl demo` without a terminal: the narrated steps, their exit codes, no secret shown,
and nothing written to the user's own guardctl home or config."""

from __future__ import annotations

import base64
import io
import shutil
import time
from pathlib import Path

import pytest

from guardctl import demo
from guardctl.env import Environment
from guardctl.errors import UnsafeError

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None,
                                reason="kubectl is not installed")

# the seeded app-secrets values (guardctl/devserver/seed.yaml)
SECRETS = ["s3cr3t-p4ss", "AKIAGUARDCTLDEV2FAKE", "hty64tI15v1FB7M3BCb+ZT/fCT7JcSXiC0eSrFZc",
           "ghp_yICuBnszzMmbN0C073IQEgIK0Pfl38lRR0w1"]
ENCODED = [base64.b64encode(s.encode()).decode() for s in SECRETS]
TITLES = ["1. An allowed read", "2. A denied delete", "3. An exec waits for a human",
          "4. A Secret, masked", "5. The replay"]


def _run(**options: bool) -> tuple[int, str, float]:
    out = io.StringIO()
    started = time.monotonic()
    code = demo.run(Environment(stdout=out), **options)
    return code, out.getvalue(), time.monotonic() - started


def _assert_nothing_secret(text: str) -> None:
    for value in SECRETS + ENCODED:
        assert value not in text
    assert "«masked:" in text


def test_demo_runs_every_step_without_a_terminal(isolated_home: Path) -> None:
    code, text, seconds = _run(fast=True)
    assert code == 0, text
    positions = [text.index(title) for title in TITLES]
    assert positions == sorted(positions)
    for shown in ("$ guardctl get pods -n dev", "web-7d4b9c8f6d-x2k9p",
                  "$ guardctl delete namespace prod", "delete-namespace", "exit code 11",
                  "The API server received 0 requests", "exit code 10", "exit code 12",
                  "the demo answers for the human", "DATABASE_URL", "--speed 20",
                  ": OK, ", "Done."):
        assert shown in text, shown
    _assert_nothing_secret(text)
    assert "\x1b[" not in text  # no terminal, no escape codes
    assert seconds < 30
    # the user's own guardctl home and config (conftest's) were never used
    assert list(isolated_home.iterdir()) == []
    assert not Path(Environment().config_path).exists()


def test_no_replay_skips_the_last_step() -> None:
    code, text, _ = _run(fast=True, replay=False)
    assert code == 0, text
    assert TITLES[3] in text and TITLES[4] not in text


def test_without_the_approval_api_the_secret_is_masked_by_guardctl_mask(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(demo, "CHILD_APPROVAL_TIMEOUT", "1")
    monkeypatch.setattr(demo.Demo, "_answer_pending", lambda self, approve: None)
    code, text, _ = _run(fast=True, replay=False)
    assert code == 0, text
    assert "No approval request appeared" in text
    assert "piped through `guardctl mask --for`" in text
    assert "$ guardctl mask --for 'get secret app-secrets -n dev -o yaml'" in text
    assert "DATABASE_URL" in text
    _assert_nothing_secret(text)


def test_a_failed_step_fails_the_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "SECRET_ARGS", ("get", "secret", "nope", "-n", "dev", "-o", "yaml"))
    code, text, _ = _run(fast=True, replay=False)
    assert code == 1
    assert "unexpected: secret: exit code 1, expected 0" in text


def test_missing_kubectl_stops_before_anything_starts() -> None:
    env = Environment(stdout=io.StringIO(),
                      environ={"GUARDCTL_KUBECTL": "/nonexistent/kubectl", "PATH": "/nonexistent"})
    with pytest.raises(UnsafeError, match="kubectl not found"):
        demo.run(env, fast=True)
    assert isinstance(env.stdout, io.StringIO) and env.stdout.getvalue() == ""
