"""The detector registry: every detector's own examples, and the schema of rules/secrets.yaml."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardctl.errors import RuleError
from guardctl.masking.detectors import (
    Detector,
    default_detectors,
    default_rules,
    load_detectors,
    parse_rules,
    shannon_entropy,
)
from guardctl.masking.mask import mask_text

DETECTORS = default_detectors()


def _examples(kind: str) -> list[tuple[str, str]]:
    return [(d.name, example) for d in DETECTORS.values() for example in getattr(d, kind)]


def _find(detector: Detector, text: str) -> list[str]:
    """What the detector hides in `text`, keyword pre-filter included."""
    if not detector.may_match(text.lower()):
        return []
    return [text[s:e] for s, e in detector.find(text)]


def test_the_registry_covers_many_formats() -> None:
    assert len(DETECTORS) >= 40
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name) for name in DETECTORS)
    assert all(d.positive and d.negative for d in DETECTORS.values())


@pytest.mark.parametrize(("name", "example"), _examples("positive"))
def test_positive_example_is_found_and_masked(name: str, example: str) -> None:
    secrets = _find(DETECTORS[name], example)
    assert secrets, f"{name} missed its own example"
    masked = mask_text(example)
    for secret in secrets:
        assert secret not in masked
    assert "«masked:" in masked


@pytest.mark.parametrize(("name", "example"), _examples("negative"))
def test_negative_example_is_left_alone(name: str, example: str) -> None:
    assert _find(DETECTORS[name], example) == []


@pytest.mark.parametrize(
    ("value", "low", "high"),
    [
        ("", 0.0, 0.0),
        ("aaaaaaaa", 0.0, 0.0),
        ("abababab", 1.0, 1.0),
        ("hunter2", 2.8, 2.9),
        ("G#iFXC0NZ!cFlwvTWxaLYUoQ", 4.3, 4.6),
    ],
)
def test_shannon_entropy(value: str, low: float, high: float) -> None:
    assert low <= shannon_entropy(value) <= high


# every name generic-secret-assignment takes; the first look-behinds of its regex check
# their last two letters, so a name they miss would never reach the full check
GENERIC_NAMES = ["pwd", "pass", "passwd", "password", "secret", "token", "apikey", "accesskey"]
GENERIC_NAMES += ["privatekey", "credential", "credentials", "db_key", "tls.key", "ssh-key"]
# (?i) takes ſ for s
SPELLINGS = {"s": ["s", "S", "ſ"]}


@settings(max_examples=300, deadline=None)
@given(
    st.data(),
    st.sampled_from(GENERIC_NAMES),
    st.sampled_from(["{}={}", "{}: {}", '"{}": "{}"', "{} = {}", "{}:\t'{}'", "export {}={}"]),
)
def test_generic_assignment_takes_each_name_in_any_case(
    data: st.DataObject, name: str, form: str
) -> None:
    spelled = "".join(data.draw(st.sampled_from(SPELLINGS.get(c, [c, c.upper()]))) for c in name)
    line = form.format("MY_" + spelled, "G#iFXC0NZ!cFlwvTWxaLYUoQ")
    found = DETECTORS["generic-secret-assignment"].find(line)
    assert [line[start:end] for start, end in found] == ["G#iFXC0NZ!cFlwvTWxaLYUoQ"]


def test_the_bundled_file_is_read_once_and_lazily() -> None:
    assert default_rules() is default_rules()
    assert load_detectors().keys() == DETECTORS.keys()


def test_structure_names_come_from_the_file() -> None:
    structure = default_rules().structure
    assert "Secret" in structure.secret_kinds
    assert {"data", "stringData"} <= structure.data_keys
    assert "client-key-data" in structure.credential_keys
    assert "client-certificate-data" not in structure.credential_keys  # a certificate is public
    assert structure.secret_name.search("DB_PASSWORD")
    assert not structure.secret_name.search("PASSWORD_MIN_LENGTH")


def test_load_detectors_from_text() -> None:
    text = """
detectors:
  - name: acme-key
    description: ACME key
    regex: 'acme_(?P<secret>[a-z0-9]{12})'
    keywords: [ACME_]
    entropy: 2.5
    min_length: 12
"""
    registry = load_detectors(text)
    assert list(registry) == ["acme-key"]
    acme = registry["acme-key"]
    assert acme.keywords == ("acme_",)
    assert list(acme.find("x acme_k3j4h5g6f7d8 y")) == [(7, 19)]
    assert list(acme.find("acme_aaaaaaaaaaaa")) == []  # below the entropy floor


_GOOD = """    description: d
    regex: 'x'
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("detectors: [\n", "not valid YAML"),
        ("rules: []\n", "unknown key 'rules'"),
        ("detectors: {}\n", "key 'detectors': must be a list"),
        ("detectors:\n  - name: Bad_Name\n" + _GOOD, "'Bad_Name' is not kebab-case"),
        ("detectors:\n  - description: d\n    regex: x\n", "detector #1: key 'name'"),
        ("detectors:\n  - name: a\n    regex: x\n", "detector 'a': missing key 'description'"),
        ("detectors:\n  - name: a\n    colour: red\n" + _GOOD, "detector #1: unknown key 'colour'"),
        ("detectors:\n  - name: a\n    description: d\n    regex: '('\n", "key 'regex': invalid"),
        ("detectors:\n  - name: a\n    entropy: 9\n" + _GOOD, "key 'entropy': must be between"),
        ("detectors:\n  - name: a\n    entropy: high\n" + _GOOD, "key 'entropy': must be a number"),
        ("detectors:\n  - name: a\n    keywords: x\n" + _GOOD, "key 'keywords': must be a list"),
        ("detectors:\n  - name: a\n    multiline: 1\n" + _GOOD, "key 'multiline': must be true"),
        (
            "detectors:\n  - name: a\n    examples: {good: []}\n" + _GOOD,
            "key 'examples': unknown key 'good'",
        ),
        ("detectors:\n  - name: a\n" + _GOOD + "  - name: a\n" + _GOOD, "'a': duplicate name"),
        ("structure: {secret_kinds: Secret}\n", "structure: key 'secret_kinds'"),
        ("structure: {colour: red}\n", "structure: unknown key 'colour'"),
    ],
)
def test_broken_files_name_file_detector_and_key(text: str, expected: str) -> None:
    with pytest.raises(RuleError) as caught:
        parse_rules(text, source="my-secrets.yaml")
    message = str(caught.value)
    assert message.startswith("my-secrets.yaml: ")
    assert expected in message


def test_the_json_copy_the_run_path_reads_is_made_from_secrets_yaml() -> None:
    # rules/secrets.yaml is the source; guardctl/data/secrets.json is what a run reads
    # (regenerate it with `python scripts/gen_secrets_json.py`)
    import json
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parent.parent
    source = yaml.safe_load((root / "rules" / "secrets.yaml").read_text("utf-8"))
    copy = json.loads((root / "guardctl" / "data" / "secrets.json").read_text("utf-8"))
    assert copy == source

    def shape(d: Detector) -> tuple[object, ...]:
        return (d.regex, d.keywords, d.entropy, d.min_length, d.multiline, d.positive)

    parsed = parse_rules((root / "rules" / "secrets.yaml").read_text("utf-8"))
    assert default_rules().structure == parsed.structure
    assert {n: shape(d) for n, d in default_rules().detectors.items()} == {
        n: shape(d) for n, d in parsed.detectors.items()
    }
