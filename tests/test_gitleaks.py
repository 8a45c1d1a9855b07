"""A team's gitleaks rules mask output beside guardctl's own (issue 12): `guardctl mask
--rules-from FILE` and the config's `detectors:`; every rule Python cannot use is reported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from guardctl.masking.detectors import default_detectors
from guardctl.masking.gitleaks import import_rules
from guardctl.masking.mask import mask_text

RULES = r"""
title = "team rules"
[extend]
useDefault = true

[allowlist]
stopwords = ["example"]

[[rules]]
id = "acme-internal-token"
description = "ACME internal API token"
regex = '''\b(acme_[[:alnum:]]{32})\b'''
keywords = ["acme_"]

[[rules]]
id = "ACME Session"
regex = '''acmesess=([a-f0-9]{24})(?:;|\z)'''
secretGroup = 1
entropy = 3.0
keywords = ["acmesess="]
[[rules.allowlists]]
regexes = ['''^0{24}$''']

[[rules]]
id = "ungreedy"
regex = '''(?U)a+b'''

[[rules]]
id = "files-only"
path = '''\.pem$'''

[[rules]]
id = "bad-group"
regex = '''x(y)'''
secretGroup = 3
"""
TOKEN = "acme_" + "Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0Uv"
SESSION = "3f9a0c1b2d4e5f60718293a4"


def _detectors() -> dict[str, object]:
    imported = import_rules(RULES, "team.toml")
    return {**{d.name: d for d in imported.detectors}, **default_detectors()}


def test_rules_become_detectors_and_the_rest_is_reported() -> None:
    imported = import_rules(RULES, "team.toml")
    assert [d.name for d in imported.detectors] == [
        "gitleaks-acme-internal-token", "gitleaks-acme-session"]
    assert len(imported.problems) == 3
    assert all(p.startswith("team.toml: rule ") for p in imported.problems)
    assert any("'ungreedy'" in p and "(?U)" in p for p in imported.problems)
    assert any("'files-only'" in p and "no regex" in p for p in imported.problems)
    assert any("'bad-group'" in p and "secretGroup" in p for p in imported.problems)


def test_team_rules_mask_with_their_id_and_their_allowlists() -> None:
    text = (f"token {TOKEN}\nset-cookie acmesess={SESSION}; path=/\n"
            "acmesess=000000000000000000000000\nacme_example000000000000000000000000000\n")
    masked = mask_text(text, _detectors())  # type: ignore[arg-type]
    assert "«masked:gitleaks-acme-internal-token»" in masked and TOKEN not in masked
    assert "acmesess=«masked:gitleaks-acme-session»;" in masked
    assert "acmesess=000000000000000000000000" in masked  # the rule's allowlist
    assert "acme_example000000000000000000000000000" in masked  # the global stopword


def test_not_toml_is_one_error_naming_the_file() -> None:
    with pytest.raises(ValueError, match=r"^team.toml: not valid TOML"):
        import_rules("[[rules]\nid = ", "team.toml")


def _guardctl(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "guardctl", *args], input=stdin, text=True,
                          capture_output=True, timeout=60, env=env)


def test_mask_rules_from_and_the_config(tmp_path: Path) -> None:
    rules = tmp_path / "team.toml"
    rules.write_text(RULES)
    env = {**os.environ, "GUARDCTL_FORKSERVER": "0",
           "GUARDCTL_CONFIG": str(tmp_path / "config.yaml")}
    proc = _guardctl(env, "mask", "--rules-from", str(rules), stdin=f"x {TOKEN}\n")
    assert proc.returncode == 0 and "«masked:gitleaks-acme-internal-token»" in proc.stdout
    assert proc.stderr.count("guardctl: left out: team.toml") == 0  # names the path given
    assert proc.stderr.count("guardctl: left out:") == 3
    (tmp_path / "config.yaml").write_text(f"detectors: [{rules}]\n")
    proc = _guardctl(env, "mask", stdin=f"x {TOKEN}\n")
    assert "«masked:gitleaks-acme-internal-token»" in proc.stdout
    (tmp_path / "config.yaml").write_text(f"detectors: [{tmp_path / 'missing.toml'}]\n")
    proc = _guardctl(env, "mask", stdin="x\n")
    assert proc.returncode == 2 and "cannot read the gitleaks rules" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_kubectl_run_masks_with_the_configured_team_rules(
    agent_env: dict[str, str], tmp_path: Path
) -> None:
    import shutil

    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    rules = tmp_path / "team.toml"
    rules.write_text(RULES)
    config = Path(agent_env["GUARDCTL_CONFIG"])
    config.write_text(config.read_text() + f"detectors: [{rules}]\n")
    created = subprocess.run(
        [kubectl, "--kubeconfig", agent_env["ADMIN_KUBECONFIG"], "create", "configmap",
         "team-token", "-n", "dev", f"--from-literal=note=uses {TOKEN}"],
        capture_output=True, timeout=60,
    )
    assert created.returncode == 0, created.stderr
    proc = _guardctl(agent_env, "get", "cm", "team-token", "-n", "dev", "-o", "yaml")
    assert proc.returncode == 0, proc.stderr
    assert TOKEN not in proc.stdout and "«masked:gitleaks-acme-internal-token»" in proc.stdout
    assert "3 gitleaks rules cannot mask this output" in proc.stderr
