"""The streaming masker: chunk safety, structure rules, base64, literals, command-awareness."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from guardctl.masking import encodings, literals, mask
from guardctl.masking.detectors import Detector, default_detectors
from guardctl.masking.mask import (
    BLOCK_CAP,
    LINE_CAP,
    TAIL,
    Masker,
    literal_digests,
    mask_text,
    masker_for,
    placeholder,
)

DATA = Path(__file__).parent / "data" / "mask"
DETECTORS = default_detectors()
GITHUB = "ghp_u8jzPde0IgxLd6GncfBAepfJBd0Kh8oOOL8d"
MASKED_DATA = placeholder("secret-data")
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEAPdBPPd+ZRwh1flQ/ZG7bdOOh1QulctAslTU2StQDH9eN6JUJ\n"
    "PdBPPd+ZRwh1flQ/ZG7bdOOh1QulctAslTU2StQDH9eN6JUJqGb8mUtDZldrphAx\n"
    "-----END RSA PRIVATE KEY-----\n"
)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def stream(chunks: Sequence[bytes], masker: Masker | None = None) -> bytes:
    masker = masker or Masker(DETECTORS)
    return b"".join(masker.feed(c) for c in chunks) + masker.flush()


def splits(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    for offset in range(len(data) + 1):
        yield data[:offset], data[offset:]


# --------------------------------------------------------------------------- chunk safety


POSITIVES = [(d.name, example) for d in DETECTORS.values() for example in d.positive]


@pytest.mark.parametrize(("name", "example"), POSITIVES)
def test_a_secret_split_at_any_offset_is_still_masked(name: str, example: str) -> None:
    data = (example + "\n").encode()
    whole = mask_text(example + "\n").encode()
    assert whole != data
    for head, tail in splits(data):
        assert stream([head, tail]) == whole, f"{name}: split at {len(head)}"


def test_the_last_line_without_a_newline_is_masked_at_flush() -> None:
    masker = Masker(DETECTORS)
    assert masker.feed(f"token {GITHUB}".encode()) == b""
    assert masker.flush() == f"token {placeholder('github-pat')}".encode()


@pytest.mark.parametrize("text", ["naïve café 漢字 🔐 ok\n", "ü" * 50 + f" {GITHUB}\n"])
def test_utf8_split_inside_a_character_stays_intact(text: str) -> None:
    data = text.encode()
    whole = mask_text(text).encode()
    for head, tail in splits(data):
        assert stream([head, tail]) == whole


def test_bytes_that_are_not_utf8_pass_through_unchanged() -> None:
    data = b"\xff\xfe binary \x80 line\n"
    assert stream([data[:3], data[3:]]) == data


def test_one_byte_at_a_time() -> None:
    text = f"a: 1\nGITHUB_TOKEN={GITHUB}\n{PEM}b: 2\n"
    assert stream([bytes([b]) for b in text.encode()]) == mask_text(text).encode()


# --------------------------------------------------------------------------- multi-line blocks


def test_a_pem_block_split_across_feeds_keeps_its_line_count() -> None:
    text = "before\n" + PEM + "after\n"
    data = text.encode()
    expected = f"before\n{placeholder('pem-private-key')}\n\n\n\nafter\n".encode()
    for head, tail in splits(data):
        assert stream([head, tail]) == expected


def test_a_pem_block_in_a_yaml_block_scalar_keeps_the_document() -> None:
    text = "key.pem: |\n" + "".join("  " + line + "\n" for line in PEM.splitlines())
    text += "other: value\n"
    masked = mask_text(text)
    assert "MIIE" not in masked
    assert yaml.safe_load(masked)["other"] == "value"


def test_a_key_block_that_never_ends_is_masked_at_eof() -> None:
    unfinished = PEM.split("-----END")[0]
    masked = stream([unfinished.encode()]).decode()
    assert "MIIE" not in masked
    assert masked.count("\n") == unfinished.count("\n")


def test_an_endless_key_block_is_given_up_on_at_the_cap() -> None:
    masker = Masker(DETECTORS)
    out = [masker.feed(b"-----BEGIN PRIVATE KEY-----\n")]
    line = b"QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB\n"
    for _ in range(BLOCK_CAP // len(line) + 10):
        out.append(masker.feed(line))
        assert masker.buffered <= BLOCK_CAP + len(line)
    shown = b"".join(out) + masker.flush()
    assert b"QUFB" not in shown
    assert placeholder("unfinished-private-key").encode() in shown


# --------------------------------------------------------------------------- Secret objects


SECRET_TYPES = {
    "Opaque": {"password": b64("hunter2"), "username": b64("admin")},
    "kubernetes.io/service-account-token": {
        "ca.crt": b64("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"),
        "namespace": b64("default"),
        "token": b64("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"),
    },
    "kubernetes.io/dockercfg": {".dockercfg": b64('{"r.example.com":{"auth":"dTpw"}}')},
    "kubernetes.io/dockerconfigjson": {
        ".dockerconfigjson": b64('{"auths":{"r.example.com":{"auth":"dTpw"}}}')
    },
    "kubernetes.io/basic-auth": {"password": b64("pw"), "username": b64("admin")},
    "kubernetes.io/ssh-auth": {"ssh-privatekey": b64(PEM)},
    "kubernetes.io/tls": {"tls.crt": b64("cert"), "tls.key": b64(PEM)},
    "bootstrap.kubernetes.io/token": {
        "token-id": b64("1daujp"),
        "token-secret": b64("wrkcrgewm2ybdoz7"),
        "usage-bootstrap-authentication": b64("true"),
    },
}


def secret(kind: str, data: dict[str, str], name: str = "s") -> dict[str, Any]:
    applied = {"apiVersion": "v1", "data": data, "kind": "Secret", "type": kind}
    return {
        "apiVersion": "v1",
        "data": data,
        "kind": "Secret",
        "metadata": {
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": json.dumps(
                    applied, separators=(",", ":")
                )
                + "\n"
            },
            "creationTimestamp": "2024-05-01T10:00:00Z",
            "name": name,
            "namespace": "default",
            "resourceVersion": "8675309",
            "uid": "0c6a1d2e-7b3f-4a58-9e21-6d4c8b0f1a27",
        },
        "type": kind,
    }


def config_map() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "data": {"game.properties": "lives=3", "ui.properties": "color=blue"},
        "kind": "ConfigMap",
        "metadata": {"name": "game", "namespace": "default"},
    }


def as_yaml(document: object) -> str:
    # kubectl prints keys sorted, so `data` comes before `kind`
    return str(yaml.safe_dump(document, sort_keys=True, width=1 << 20))


def as_json(document: object) -> str:
    return json.dumps(document, indent=4, sort_keys=True) + "\n"


def assert_masked_secret(original: dict[str, Any], masked: dict[str, Any]) -> None:
    assert masked.keys() == original.keys()
    data = masked["data"]
    assert data == {key: MASKED_DATA for key in original["data"]}
    assert masked["type"] == original["type"]
    meta, original_meta = masked["metadata"], original["metadata"]
    assert isinstance(meta, dict) and isinstance(original_meta, dict)
    for key in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp"):
        assert meta[key] == original_meta[key]
    applied = json.loads(meta["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
    assert applied["data"] == data


FORMATS = [(as_yaml, yaml.safe_load), (as_json, json.loads)]
Dump = Callable[[object], str]
Load = Callable[[str], Any]


@pytest.mark.parametrize("kind", sorted(SECRET_TYPES))
@pytest.mark.parametrize(("dump", "load"), FORMATS)
def test_every_secret_type_is_masked_and_still_parses(kind: str, dump: Dump, load: Load) -> None:
    original = secret(kind, SECRET_TYPES[kind])
    masked = mask_text(dump(original))
    assert_masked_secret(original, load(masked))


@pytest.mark.parametrize(("dump", "load"), FORMATS)
def test_a_list_masks_secrets_and_keeps_config_maps(dump: Dump, load: Load) -> None:
    items = [secret(k, SECRET_TYPES[k], name=f"s{i}") for i, k in enumerate(SECRET_TYPES)]
    items.insert(2, config_map())
    document = {"apiVersion": "v1", "items": items, "kind": "List", "metadata": {}}
    text = dump(document)
    for chunk_size in (7, 4096, len(text)):
        data = text.encode()
        chunks = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)]
        masked = load(stream(chunks).decode())
        assert masked["items"][2] == config_map()
        for original, result in zip(
            items[:2] + items[3:], masked["items"][:2] + masked["items"][3:], strict=True
        ):
            assert_masked_secret(original, result)


def test_string_data_block_scalars_are_masked_line_by_line() -> None:
    text = (
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n"
        "  config.yaml: |\n    user: admin\n    password: hunter2\n  plain: hunter2\ntype: Opaque\n"
    )
    masked = mask_text(text)
    assert "hunter2" not in masked and "admin" not in masked
    document = yaml.safe_load(masked)
    assert document["stringData"]["plain"] == MASKED_DATA
    assert document["type"] == "Opaque"
    assert masked.count("\n") == text.count("\n")


def test_structure_mode_masks_without_waiting_for_kind() -> None:
    masker = Masker(DETECTORS, mode="structure")
    shown = masker.feed(b"data:\n  password: aHVudGVyMg==\n")
    assert shown == f"data:\n  password: {MASKED_DATA}\n".encode()


def test_text_mode_holds_a_data_section_until_the_kind_is_known() -> None:
    masker = Masker(DETECTORS)
    assert masker.feed(b"data:\n  game: bGl2ZXM9Mw==\n") == b""
    assert masker.buffered > 0
    assert masker.feed(b"kind: ConfigMap\n") == b"data:\n  game: bGl2ZXM9Mw==\nkind: ConfigMap\n"


def test_a_data_section_whose_kind_never_comes_is_masked() -> None:
    assert mask_text("data:\n  password: aHVudGVyMg==\n") == f"data:\n  password: {MASKED_DATA}\n"


def test_compact_json_lines_of_secrets_are_masked() -> None:
    line = json.dumps(secret("Opaque", SECRET_TYPES["Opaque"]), separators=(",", ":"))
    masked = json.loads(mask_text(line + "\n"))
    assert masked["data"] == {"password": MASKED_DATA, "username": MASKED_DATA}


# --------------------------------------------------------------------------- other structure


def test_kubeconfig_credentials_are_masked_and_certificates_kept() -> None:
    text = (DATA / "kubeconfig.yaml").read_text()
    masked = mask_text(text)
    assert masked == (DATA / "kubeconfig.masked.yaml").read_text()
    config = yaml.safe_load(masked)
    users = {u["name"]: u["user"] for u in config["users"]}
    assert users["admin"]["client-key-data"] == placeholder("credential")
    assert users["admin"]["client-certificate-data"].startswith("LS0tLS1CRUdJTiBDRVJU")
    assert users["robot"]["token"] == placeholder("credential")
    assert users["basic"] == {"password": placeholder("credential"), "username": "admin"}
    oidc = users["oidc"]["auth-provider"]["config"]
    assert {oidc[k] for k in ("client-secret", "id-token", "refresh-token")} == {
        placeholder("credential")
    }
    assert oidc["idp-issuer-url"] == "https://issuer.example"


def test_describe_secret_keeps_sizes_and_masks_values() -> None:
    text = (DATA / "describe-secret.txt").read_text()
    masked = mask_text(text)
    assert masked == (DATA / "describe-secret.masked.txt").read_text()
    assert "ca.crt:     1099 bytes" in masked and "password:  14 bytes" in masked
    assert "eyJ" not in masked


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "env:\n- name: DB_PASSWORD\n  value: postgres\n- name: LOG_LEVEL\n  value: debug\n",
            "env:\n- name: DB_PASSWORD\n  value: «masked:secret-env»\n"
            "- name: LOG_LEVEL\n  value: debug\n",
        ),
        (
            '[\n    {\n        "name": "API_TOKEN",\n        "value": "abc"\n    }\n]\n',
            '[\n    {\n        "name": "API_TOKEN",\n        "value": "«masked:secret-env»"\n'
            "    }\n]\n",
        ),
        (
            '- name: PASSWORD_MIN_LENGTH\n  value: "8"\n',
            '- name: PASSWORD_MIN_LENGTH\n  value: "8"\n',
        ),
    ],
)
def test_env_values_with_secret_looking_names(text: str, expected: str) -> None:
    assert mask_text(text) == expected


@pytest.mark.parametrize("name", ["pod.yaml", "pods.txt", "secrets.txt", "events.txt"])
def test_names_uids_digests_timestamps_and_ips_stay(name: str) -> None:
    text = (DATA / name).read_text()
    assert mask_text(text) == text


@pytest.mark.parametrize(
    "line",
    [
        "uid: 0c6a1d2e-7b3f-4a58-9e21-6d4c8b0f1a27",
        "image: nginx@sha256:4c5e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6",
        'creationTimestamp: "2024-05-01T10:00:00Z"',
        'resourceVersion: "8675309"',
        "podIP: 192.168.7.21",
        "ip: fd00:10:244::15",
        "name: bootstrap-token-1daujp",
        'token: ""',
        "PASSWORD_MIN_LENGTH=8",
        "secretName: web-tls",
        # what kubectl prints in place of a value
        "client-key-data: DATA+OMITTED",
        "password: null",
    ],
)
def test_ordinary_values_stay(line: str) -> None:
    assert mask_text(line + "\n") == line + "\n"


def test_table_columns_keep_their_positions() -> None:
    table = f"NAME   TOKEN                                        AGE\nci     {GITHUB}     4h\n"
    masked = mask_text(table).splitlines()
    assert masked[1].index("4h") == table.splitlines()[1].index("4h")
    assert placeholder("github-pat") in masked[1]
    assert masked[0] == table.splitlines()[0]


def test_masks_never_add_or_remove_line_breaks() -> None:
    text = f"a {GITHUB}\r\n{PEM}b\n\n"
    assert mask_text(text).count("\n") == text.count("\n")
    assert mask_text(text).count("\r\n") == 1


def test_placeholders_survive_yaml_flow_style() -> None:
    masked = mask_text(f"x: {{a: {GITHUB}, b: [1, 2]}}\n")
    assert yaml.safe_load(masked) == {"x": {"a": placeholder("github-pat"), "b": [1, 2]}}


# --------------------------------------------------------------------------- literals and base64


LITERAL = "s3cr3t-minted-token-value"


@pytest.mark.parametrize(
    "text",
    [
        f"token is {LITERAL} here\n",
        f"b64: {b64(LITERAL)}\n",
        *(f"blob: {b64(prefix + LITERAL + ' tail')}\n" for prefix in ("", "a", "ab", "abc")),
    ],
)
def test_literal_values_are_masked_plain_and_in_base64(text: str) -> None:
    masked = mask_text(text, literals=[LITERAL])
    assert LITERAL not in masked
    assert b64(LITERAL)[:12] not in masked
    assert placeholder("literal") in masked or "+base64" in masked


@pytest.mark.parametrize(
    "text",
    [
        f"token is {LITERAL} here\n",
        f'{{"token":"{LITERAL}"}}\n',
        f"TOKEN={LITERAL}\n",
        f"opts --flag={LITERAL} user:{LITERAL}@host\n",
        f"b64: {b64(LITERAL)}\n",
        # every base64 alignment of the value inside a larger blob
        *(f"blob: {b64(prefix + LITERAL + ' tail')}\n" for prefix in ("", "x ", "xy ", "xyz ")),
    ],
)
def test_values_known_only_by_digest_are_masked_like_literals(text: str) -> None:
    # a credential cache keeps digests, not the credential; they must hide it as well
    digests = literal_digests([LITERAL])
    assert not any(LITERAL in d or b64(LITERAL) in d for d in digests)
    masked = mask_text(text, digests=digests)
    assert LITERAL not in masked
    assert b64(LITERAL)[:12] not in masked


def test_a_value_known_by_digest_split_at_any_offset_is_still_masked() -> None:
    digests = literal_digests([LITERAL])
    data = f"token: {LITERAL}\nnext: {b64(LITERAL)}\n".encode()
    whole = mask_text(data.decode(), digests=digests).encode()
    assert LITERAL.encode() not in whole and b64(LITERAL).encode() not in whole
    for head, tail in splits(data):
        assert stream([head, tail], Masker(DETECTORS, digests=digests)) == whole


def test_digests_hide_only_their_values_and_each_line_of_a_key() -> None:
    other = "s3cr3t-minted-token-valuX"  # same length, same characters but one
    assert mask_text(f"id {other}\n", digests=literal_digests([LITERAL])) == f"id {other}\n"
    # a multi-line secret is digested line by line (a PEM body, an env value with spaces)
    lines = PEM.splitlines()[1:3]
    masked = mask_text(f"dump {lines[0]} and {lines[1]}\n", digests=literal_digests([PEM]))
    assert lines[0] not in masked and lines[1] not in masked and masked.startswith("dump ")


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [LITERAL, b64(LITERAL), "ab", "=", " ", ":", "é", "漢", "x" * 30, "\n",
             *PEM.splitlines()[1:3], b64(PEM)[:40]]
        ),
        max_size=12,
    ),
    st.sampled_from([[LITERAL], [LITERAL, PEM], [PEM]]),
)
def test_digest_runs_are_the_runs_digests_are_made_of(
    parts: list[str], secrets: list[str]
) -> None:
    # the fast run finder must find exactly the whole runs `literal_digests` digests (runs
    # of many lengths: a key's lines and their base64 forms; a run longer than the shortest)
    from guardctl.masking.mask import _RUN, _digest, _DigestMatcher

    text = "".join(parts)
    digests = literal_digests(secrets)
    expected = [run.span() for run in _RUN.finditer(text) if _digest(run[0]) in digests]
    assert list(_DigestMatcher(digests).spans(text)) == expected


def test_short_literals_are_ignored() -> None:
    assert mask_text("a b c\n", literals=["b"]) == "a b c\n"


@pytest.mark.parametrize(
    ("text", "name"),
    [
        (f"value: {b64('GITHUB_TOKEN=' + GITHUB)}\n", "github-pat+base64"),
        (f"value: {b64(b64('GITHUB_TOKEN=' + GITHUB))}\n", "github-pat+base64"),
        (f"value: {b64(PEM)}\n", "pem-private-key+base64"),
    ],
)
def test_base64_blobs_that_hide_a_secret_are_masked(text: str, name: str) -> None:
    assert mask_text(text) == f"value: {placeholder(name)}\n"


def test_wrapped_base64_is_decoded_across_lines() -> None:
    blob = b64("config:\n  GITHUB_TOKEN=" + GITHUB + "\n" + "padding " * 10)
    wrapped = "".join("    " + blob[i : i + 40] + "\n" for i in range(0, len(blob), 40))
    text = "Certificate:\n" + wrapped + "done\n"
    data = text.encode()
    for head, tail in list(splits(data))[:: len(data) // 25]:
        masked = stream([head, tail]).decode()
        assert not any(line in masked for line in wrapped.splitlines())
        assert "github-pat+base64" in masked
        assert masked.count("\n") == text.count("\n")


@pytest.mark.parametrize(("key", "masked"), [("encryption-key", True), ("checksum", False)])
def test_random_bytes_are_masked_under_a_secret_looking_key(key: str, masked: bool) -> None:
    blob = base64.b64encode(bytes(range(7, 250, 7))).decode()
    result = mask_text(f"{key}: {blob}\n")
    assert (blob not in result) is masked


# --------------------------------------------------------------------------- whole-line mode


@pytest.mark.parametrize(
    ("argv", "mode"),
    [
        (("get", "secret", "db", "-o", "jsonpath={.data.password}"), "whole"),
        (("get", "secrets", "-ojsonpath={.items[*].data}"), "whole"),
        (("get", "secret/db", "-o=go-template={{.data.password}}"), "whole"),
        (
            ("-n", "x", "get", "Secret", "db", "--output", "custom-columns=P:.data.password"),
            "columns",
        ),
        (("get", "secrets", "-o", "custom-columns=P:.data.password", "--no-headers"), "whole"),
        (("get", "secrets", "-o", "custom-columns=garbage"), "whole"),
        (("get", "secret", "db", "--output=go-template-file=t.tmpl"), "whole"),
        (("get", "secret", "db", "--template={{.data.password}}"), "whole"),
        (("get", "cm,secrets", "-o", "template={{.data}}"), "whole"),
        (("config", "view", "--raw", "-o", "jsonpath={.users[0].user.token}"), "whole"),
        (("get", "secret", "db", "-o", "yaml"), "structure"),
        (("get", "secrets", "-A"), "structure"),
        (("describe", "secret", "db"), "structure"),
        (("get", "pods", "-o", "jsonpath={.items[*].metadata.name}"), "text"),
        (("get", "configmap", "-o", "yaml"), "text"),
        (("logs", "deploy/web"), "text"),
    ],
)
def test_masker_for_reads_the_command(argv: tuple[str, ...], mode: str) -> None:
    masker = masker_for(argv, DETECTORS)
    assert masker.mode == mode


def test_whole_mode_masks_every_non_empty_line() -> None:
    masker = masker_for(("get", "secret", "db", "-o", "jsonpath={.data.password}"), DETECTORS)
    chunks = [b"aHVu", b"dGVyMg==\n\nYWRt", b"aW4="]
    assert stream(chunks, masker) == (
        f"{placeholder('command-output')}\n\n{placeholder('command-output')}".encode()
    )


def test_unknown_mode_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown masking mode"):
        Masker(DETECTORS, mode="html")


# --------------------------------------------------------------------------- bounded memory


def test_fifty_megabytes_stream_through_a_bounded_buffer() -> None:
    item = (
        "- apiVersion: v1\n  data:\n    password: aHVudGVyMg==\n    tls.key: "
        + "QUJD" * 500
        + "\n  kind: Secret\n  metadata:\n    name: s\n  type: Opaque\n"
    ).encode()
    chunk = (item * (65536 // len(item) + 1))[:65536]
    masker = Masker(DETECTORS)
    bound = LINE_CAP + BLOCK_CAP + 2 * 65536
    most = 0
    shown = 0
    for _ in range(50 * 1024 * 1024 // len(chunk)):
        shown += len(masker.feed(chunk))
        most = max(most, masker.buffered)
    shown += len(masker.flush())
    assert most <= bound
    assert shown > 0


def test_a_line_without_end_is_cut_with_a_bounded_tail() -> None:
    masker = Masker(DETECTORS)
    piece = b"word " * 13107  # 64 KiB of a line that never ends
    shown = b""
    for _ in range(40):
        shown += masker.feed(piece)
        assert masker.buffered <= LINE_CAP + len(piece)
    assert len(shown) > 40 * len(piece) - LINE_CAP - TAIL
    assert shown + masker.flush() == piece * 40


def test_an_overlong_secret_value_is_masked_whole() -> None:
    masker = Masker(DETECTORS, mode="structure")
    shown = masker.feed(b"data:\n  blob: ")
    for _ in range(LINE_CAP // 65536 + 2):
        shown += masker.feed(b"QUJD" * 16384)
    shown += masker.feed(b"QUJD\n  other: eA==\n") + masker.flush()
    assert b"QUJD" not in shown
    assert shown == f"data:\n  blob: {MASKED_DATA}\n  other: {MASKED_DATA}\n".encode()


# --------------------------------------------------------------------------- any chunking

CORPUS = "".join(
    [
        (DATA / "kubeconfig.yaml").read_text(),
        "---\n",
        as_yaml(secret("kubernetes.io/tls", SECRET_TYPES["kubernetes.io/tls"])),
        (DATA / "describe-secret.txt").read_text(),
        as_json(secret("Opaque", SECRET_TYPES["Opaque"])),
        f"GITHUB_TOKEN={GITHUB}\n",
        PEM,
        (DATA / "pods.txt").read_text(),
    ]
).encode()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(CORPUS)), max_size=12))
def test_any_chunking_gives_the_same_output(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(CORPUS)]
    chunks = [CORPUS[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    assert stream(chunks) == stream([CORPUS])


# --------------------------------------------------------------------------- fast paths
# Each shortcut of the masker must find exactly what the plain way does: these compare them.

# what the structure rules react to, each with the lines that follow it
SNIPPETS = [
    ["- name: DB_PASSWORD", "  value: hunter2hunter2"],
    ["env:", "- name: API_TOKEN", "  value: |", "    q8MxVj5l3V26Xk"],
    ["Name:         s", "Type:  Opaque", "", "Data", "====", "token:  12 bytes", "extra:  oops"],
    ["Name:         s", "Data", "====", "ca.crt:  10 bytes", "key:  leaked"],
    ["- apiVersion: v1", "  data:", f"    password: {b64('hunter2')}", "  kind: Secret"],
    ["- kind: ConfigMap", "  stringData:", "    a: b", "    c: |", "      d"],
    ["{", '  "kind": "Secret",', '  "data": {', '    "a": "YWFh"', "  }", "}"],
    ['{"kind":"Secret","data":{"a":"YWFh"}}'],
    ['last: "{\\"kind\\":\\"Secret\\",\\"data\\":{\\"a\\":\\"b\\"}}"'],
    ["users:", "- name: u", "  user:", "    token: abc.def", "    Client-Key-Data: QUJD"],
    ["script: >-", "  line of a block", "  another"],
    ["token: |", "  abc", "  def"],
    ["---", "kind: Secret", "data:"],
    ["kind: List", "items:"],
    [f"note: {GITHUB}", "TOKEN: q8MxVj5l3V26Xk", "Password: G#iFXC0NZ!cFlwvTWxaLYUoQ"],
    # an env entry's name, then lines below it (passed on in runs too), then its value
    ["- name: DB_PASSWORD", "  valueFrom:", "    note: x", "", "  value: hunter2hunter2"],
    ["- name: DB_PASSWORD", "  valueFrom:", "    secretKeyRef:", "      key: password",
     "      name: db", "      value: q8MxVj5l3V26Xk", "  image: nginx", "value: q8MxVj5l3V26Xk"],
    ["Name:         s", "Data", "", "====", "token:  leaked"],
    ["'kind': Secret", "'data':", "  a: YWFh"],
    ["kind\": Secret", "data:", "  a: YWFh"],
    # keys and names that (?i) or lower() read as ASCII words
    ["to\u212aen: q8MxVj5l3V26Xk", "- name: pa\u017fsword", "  value: hunter2hunter2"],
    ['"value": "x",', '"name": "API_TOKEN",', '"value": "hunter2hunter2"'],
]
# lines no rule reads, which runs take in
ORDINARY = [
    "uid: 6f1c2d3e-4b5a-4c7d-8e9f-000000000001",
    'creationTimestamp: "2024-05-01T10:00:00Z"',
    "namespace: ns-1",
    "- containerPort: 80",
    '"image": "nginx",',
    "},",
    "plain words without a colon",
    "NAME   TYPE   DATA   AGE",
    "\tkey: x",
    "key:\tvalue",
    "key:",
    "weird key: v",
    "# comment: x",
    "   ",
    "",
    "value: plain",
    "- name: LOG_LEVEL",
    "name: web-1",
    "  nested: deeper",
    "time 10:00:01 ok",
    "caf\u00e9: au lait",
]


@st.composite
def documents(draw: st.DrawFn) -> bytes:
    lines: list[str] = []
    for _ in range(draw(st.integers(min_value=0, max_value=8))):
        lead = " " * draw(st.sampled_from([0, 0, 2, 2, 4, 6, 1]))
        lines += [lead + line for line in draw(st.lists(st.sampled_from(ORDINARY), max_size=4))]
        lines += [lead + line for line in draw(st.sampled_from(SNIPPETS))]
    end = draw(st.sampled_from(["\n", "\n", "\r\n"]))
    return "".join(line + end for line in lines).encode()


@st.composite
def chunked(draw: st.DrawFn, data: bytes) -> list[bytes]:
    cuts = draw(st.lists(st.integers(min_value=0, max_value=len(data)), max_size=6))
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


@pytest.mark.parametrize("noted_after", [0, mask.NOTED_AFTER], ids=["hyperscan", "re"])
@settings(max_examples=300, deadline=None)
@given(st.data(), documents(), st.sampled_from(["text", "structure"]))
def test_runs_of_untouched_lines_change_nothing(
    noted_after: int, data: st.DataObject, text: bytes, mode: str
) -> None:
    # runs of lines that no structure rule reads are passed on by one regex match (or, with
    # Hyperscan, the lines a rule may act on are found first); read one by one instead, they
    # must come out the same
    chunks = data.draw(chunked(text))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mask, "NOTED_AFTER", noted_after)
        if noted_after:
            patch.setattr(mask, "_NOTED", {})  # none built yet: the regex runs serve
        fast = stream(chunks, Masker(DETECTORS, mode=mode))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mask._Structure, "_untouched", lambda self, text, pos: pos)
        plain = stream(chunks, Masker(DETECTORS, mode=mode))
    assert fast == plain


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_the_keyword_prefilter_finds_what_a_full_scan_finds(data: st.DataObject) -> None:
    # common and rare characters (searched for differently), keywords that are prefixes of
    # one another, at the starts and ends of lines, in upper case
    word = st.text("aetsn:-_kqxyz.", min_size=1, max_size=4)
    keywords = data.draw(st.lists(st.lists(word, min_size=1, max_size=3), min_size=1, max_size=4))
    pieces = [k for words in keywords for k in words] + ["a", "Q", "-", " ", "\n", "\n"]
    text = "".join(data.draw(st.lists(st.sampled_from(pieces), max_size=40)))
    text = data.draw(st.sampled_from([text, text.upper(), text.title()]))
    # a multi-line detector runs on the whole text once one of its keywords is there
    multiline = data.draw(st.lists(st.booleans(), min_size=len(keywords), max_size=len(keywords)))

    def registry(prefilter: bool) -> dict[str, Detector]:
        return {
            f"d{index}": Detector(
                name=f"d{index}",
                description="test",
                regex="(?i)" + "|".join(re.escape(k) for k in words),
                keywords=tuple(words) if prefilter else (),
                multiline=multiline[index],
            )
            for index, words in enumerate(keywords)
        }

    assert mask_text(text, registry(True)) == mask_text(text, registry(False))


# characters beyond ASCII: in latin-1 or not, lower-cased to an ASCII letter (İ, the Kelvin
# sign), and what Hyperscan reads a character beyond latin-1 as ("?")
ODD = ["é", "«", "İ", "\u212a", "?", "漢"]


def keyword_lines(keywords: Any, text: str, hyperscan: bool) -> list[tuple[str, list]]:
    """Where `keywords` (a mask._Keywords) has its detectors run, found by Hyperscan or not."""
    scan = keywords.scan
    if not hyperscan:
        keywords.scan = None
    try:
        return [(d.name, r) for d, r in keywords.regions(text, mask._lower(text))]
    finally:
        keywords.scan = scan


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_hyperscan_finds_the_keyword_lines_the_plain_search_finds(data: st.DataObject) -> None:
    pytest.importorskip("hyperscan")
    word = st.text("aetsn:-_kqxyz.", min_size=1, max_size=4)
    keywords = data.draw(st.lists(st.lists(word, min_size=1, max_size=3), min_size=1, max_size=4))
    pieces = [k for words in keywords for k in words] + ["a", "Q", "-", " ", "\n", "\n", *ODD]
    text = "".join(data.draw(st.lists(st.sampled_from(pieces), max_size=40)))
    text = data.draw(st.sampled_from([text, text.upper(), text.title()]))
    detectors = tuple(
        Detector(f"d{i}", "test", "x", tuple(words), multiline=data.draw(st.booleans()))
        for i, words in enumerate(keywords)
    )
    index = mask._Keywords(detectors)
    assert index.scan is not None
    assume(len(mask._lower(text)) == len(text))  # else the keyword lines are not used (İ)
    assert keyword_lines(index, text, True) == keyword_lines(index, text, False)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_hyperscan_finds_the_detectors_that_may_match(data: st.DataObject) -> None:
    pytest.importorskip("hyperscan")
    word = st.text("aetsn:-_kqxyz.", min_size=1, max_size=4)
    keywords = data.draw(st.lists(st.lists(word, max_size=3), min_size=1, max_size=4))
    pieces = [k for words in keywords for k in words] + ["a", "Q", "-", " ", "\n", *ODD]
    pieces += [k.replace("k", "\u212a") for k in pieces]  # lower() makes the Kelvin sign a k
    text = "".join(data.draw(st.lists(st.sampled_from(pieces), max_size=30)))
    text = data.draw(st.sampled_from([text, text.upper(), text.title()]))
    detectors = tuple(Detector(f"d{i}", "t", "x", tuple(k)) for i, k in enumerate(keywords))
    # the multi-line detectors' among all of them, as a scanner asks
    asked = tuple(d for d in detectors if data.draw(st.booleans()))
    index = mask._keywords_for(detectors)
    assert index.scan is not None or not any(keywords)
    present = mask._Present(asked, index)
    assert present.among(text) == [d for d in asked if d.may_match(text.lower())]


# a fresh process (a run without a warm server) masking two chunks: the second, read with
# the end of the first by the multi-line detectors, must not build a keyword scan of its own
_SECOND_CHUNK = """
from guardctl.masking import detectors, mask
found = detectors.default_detectors()
masker = mask.masker_for(["get", "pods"], found, ["a-minted-token-0123456789"])
masker.feed(b"first: line\\n")
built = []
real = mask.literal_scan
mask.literal_scan = lambda words: built.append(words) or real(words)
masker.feed(b"password: hunter2\\n-----BEGIN OPENSSH PRIVATE KEY-----\\n")
masker.flush()
print(len(built))
"""


def test_a_second_chunk_builds_no_keyword_scan_of_its_own() -> None:
    pytest.importorskip("hyperscan")
    done = subprocess.run([sys.executable, "-c", _SECOND_CHUNK], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0"]


NAMING_PIECES = [*mask._SECRET_WORDS, "PASS", "Token", "- ", "  - ", "x", ": ", " ", "\n", *ODD]
NAMING_PIECES += ["\u212aey", "to\u212aen", "prİvate"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(NAMING_PIECES), max_size=30).map("".join))
def test_hyperscan_finds_the_naming_lines_the_plain_search_finds(text: str) -> None:
    pytest.importorskip("hyperscan")
    assert mask._secret_words_scan() is not None
    fast = mask._naming_lines(text, mask._lower(text))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mask, "_secret_words_scan", lambda: None)
        assert mask._naming_lines(text, mask._lower(text)) == fast


def test_the_plain_search_for_naming_lines_ends_when_lower_makes_text_longer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # lower() makes each İ two characters, so offsets of the lowered text run ahead of the
    # text's: a line break of the text at the word's offset in the lowered one made the
    # search find the same word again, forever (a hang of the masker)
    monkeypatch.setattr(mask, "_secret_words_scan", lambda: None)
    text = "İİİkey\n"
    assert mask._naming_lines(text, mask._lower(text)) == {0}


def test_hyperscan_finds_the_keyword_lines_in_the_corpus_and_bench_inputs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("hyperscan")
    from mask_corpus import cases

    monkeypatch.syspath_prepend(str(Path(__file__).parent.parent / "bench"))
    from bench_mask import INPUTS

    texts = [case.text for case in cases()]
    texts += ["".join(make(1))[:65536] for _, make in INPUTS.values()]
    index = mask._keywords_for(tuple(DETECTORS.values()))
    assert index.scan is not None
    for text in texts:
        assert keyword_lines(index, text, True) == keyword_lines(index, text, False)


# base64 runs and tokens around the lengths that count (16, 20), wrapped and indented, with
# padding, blanks and characters latin-1 has or lacks; hex of text and of bytes, odd and even
B64_PIECES = ["QUJD", "QUJDQUJDQUJDQUJD", "QUJDQUJDQUJDQUJDQUJD", "a", "9", "+/", "=", "=="]
B64_PIECES += [" ", "\t", "\n", "\n", "\n    ", "\r", "«", "漢"]
B64_PIECES += ["4142", "0a", "7F", "00", "deadbeef", "6869207468657265", "e3b0c44298fc1c14"]
B64_TEXT = st.lists(st.sampled_from(B64_PIECES), max_size=40).map("".join)


@settings(max_examples=800, deadline=None)
@given(B64_TEXT)
def test_base64_candidates_are_what_the_regexes_find(text: str) -> None:
    runs, tokens, hex_binary = encodings.b64_candidates(text)
    every = [found.span() for found in re.finditer(r"[A-Za-z0-9+/]{16,}={0,2}", text)]
    assert hex_binary == [span for span in every if encodings.HEX_BINARY.fullmatch(text, *span)]
    assert tokens == [span for span in every if span not in hex_binary]
    assert runs == [found.span() for found in encodings.B64_RUN.finditer(text)]


def test_a_long_token_of_hex_then_letters_is_a_token_not_hex() -> None:
    # hex up to a letter is no hex token: found in one pass (a lazy-then-greedy regex such
    # as HEX_BINARY tries each pair again to the letter, square time: hours at this size)
    text = "id " + "00" * 200_000 + "zz x\n"
    runs, tokens, hex_binary = encodings.b64_candidates(text)
    assert (runs, tokens, hex_binary) == ([], [(3, 400_005)], [])
    assert encodings.b64_candidates("id " + "00" * 200_000 + " x\n").hex_binary == [(3, 400_003)]


# what TOKEN_LINES must tell apart: tokens of hex (odd, even, of text or of bytes) and not, with
# padding, at either end of a line or the text, paths and near-paths, names of secrets
TOKEN_PIECES = [*B64_PIECES, "/", "/var/run/", "/a/b", "/x//", "/é/", "_", ".", "-", "+", "?"]
TOKEN_PIECES += ["G", "0123456789abcdef", "0123456789ABCDEF0", "7f7e", "2020202020202020"]
TOKEN_PIECES += ["token: ", "PASSWORD=", "- ", "ſecret", "\u212aey"]
TOKEN_TEXT = st.lists(st.sampled_from(TOKEN_PIECES), max_size=40).map("".join)


@settings(max_examples=1500, deadline=None)
@given(TOKEN_TEXT)
def test_hyperscan_token_lines_leave_the_candidates_as_they_are(text: str) -> None:
    # the tokens looked for only on the lines TOKEN_LINES and the naming words found must
    # be exactly those the plain way decodes
    pytest.importorskip("hyperscan")
    assert mask._token_lines_scan(True) is not None
    fast = mask._b64_found(text, mask._lower(text))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mask, "_token_lines_scan", lambda build: None)
        assert mask._b64_found(text, mask._lower(text)) == fast


def plain_b64_candidates(text: str) -> encodings.Base64Candidates:
    """What encodings.b64_candidates finds, the plain way: the regexes it stands for."""
    every = [found.span() for found in re.finditer(r"[A-Za-z0-9+/]{16,}={0,2}", text)]
    binary = [span for span in every if encodings.HEX_BINARY.fullmatch(text, *span)]
    runs = [found.span() for found in encodings.B64_RUN.finditer(text)]
    return encodings.Base64Candidates(runs, [s for s in every if s not in binary], binary)


def without_keywords(name: str) -> dict[str, Detector]:
    """The bundled detectors with detector `name` run on every text, not on keyword lines."""
    registry = dict(DETECTORS)
    old = registry[name]
    registry[name] = Detector(
        name, old.description, old.regex, (), old.entropy, old.min_length, old.multiline,
        not_values=old.not_values, not_after=old.not_after, after=old.after,
    )
    return registry


# the names generic-secret-assignment takes (and near misses), each letter in any case or as a
# letter that (?i) takes for it (ſ for s, ı and İ for i, the Kelvin sign for k), in
# assignments, with ids, words, masks and non-ASCII text around them
GENERIC_WORDS = ["password", "pwd", "api_key", "apikey", "secretkey", "token", "credentials"]
GENERIC_WORDS += ["passwd", "privatekey", "accesskey", "monkey", "checksum/secret", "x"]
FOLDS = {"s": ["ſ"], "i": ["ı", "İ"], "k": ["\u212a"]}
GENERIC_FORMS = ["{}={}", "{}: {}", '"{}": "{}"', "{} = {}", "{}:\t'{}'", "export MY_{}={}"]
GENERIC_VALUES = ["G#iFXC0NZ!cFlwvTWxaLYUoQ", "q8MxVj5l3V26Xk", "e3b0c44298fc1c149afbf4c8996fb924"]
GENERIC_VALUES += ["«masked:x»", "naïve-value-1", "ab"]


@st.composite
def generic_lines(draw: st.DrawFn) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        word = draw(st.sampled_from(GENERIC_WORDS))
        spelled = "".join(draw(st.sampled_from([c, c.upper(), *FOLDS.get(c, [])])) for c in word)
        form = draw(st.sampled_from(GENERIC_FORMS))
        line = form.format(spelled, draw(st.sampled_from(GENERIC_VALUES)))
        lines.append(draw(st.sampled_from(["", "  ", "level=info ", "- "])) + line)
    return "\n".join(lines) + draw(st.sampled_from(["", "\n"]))


@settings(max_examples=400, deadline=None)
@given(generic_lines())
def test_generic_assignment_on_keyword_lines_finds_what_a_full_scan_finds(text: str) -> None:
    plain = without_keywords("generic-secret-assignment")
    assert mask_text(text) == mask_text(text, plain)


def test_the_corpus_and_the_bench_inputs_are_masked_as_the_plain_way_masks_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mask_corpus import cases

    monkeypatch.syspath_prepend(str(Path(__file__).parent.parent / "bench"))
    from bench_mask import INPUTS

    inputs = [(case.argv, case.text) for case in cases()]
    inputs += [(argv, "".join(make(1))[:300_000]) for argv, make in INPUTS.values()]

    def masked(registry: dict[str, Detector]) -> list[str]:
        outputs = []
        for argv, text in inputs:
            masker = masker_for(argv, registry)
            data = text.encode()
            chunks = [data[i : i + 65536] for i in range(0, len(data), 65536)]
            outputs.append(stream(chunks, masker).decode())
        return outputs

    fast = masked(dict(DETECTORS))
    with reference_masking():
        assert masked(without_keywords("generic-secret-assignment")) == fast


# what builds a masker's native (Hyperscan) scans, kept per detector set or for good
NATIVE_CACHES = (
    mask._keywords_for, mask._detector_tables, mask._secret_words_scan, mask._present,
)


@contextmanager
def reference_masking() -> Iterator[None]:
    """The masker as it runs without Hyperscan (another CPU, or the wheel missing): the
    pure-`re` reference, base64 tokens found by the plain regexes."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(literals, "_hyperscan", lambda: None)
        patch.setattr(mask, "_NOTED", {})
        patch.setattr(mask, "_NATIVE", {})
        patch.setattr(mask, "b64_candidates", plain_b64_candidates)
        for cache in NATIVE_CACHES:
            cache.cache_clear()
        try:
            yield
        finally:
            for cache in NATIVE_CACHES:
                cache.cache_clear()


# lines of what kubectl prints where the scanner's native shortcuts decide: ids and digests
# (hex of bytes and of text, odd), tokens, paths, names of secrets, wrapped base64, secrets
# of many formats, values known by digest only, colour, text beyond ASCII
SCANNED_LINES = [
    "2026-12-07T09:00:00.000Z INFO request_id=0f1e2d3c4b5a69788796a5b4c3d2e1f0 path=/api/v1/x/1",
    "trace_id=6869207468657265686920746865726520 user=u1",
    "image: registry.example.com/web@sha256:" + "ab" * 32,
    "checksum/secret: " + "0c" * 32,
    "api_key: " + "7f" * 16,
    "- " + "e3b0c44298fc1c149afbf4c8996fb924",
    "  creationTimestamp: serviceAccountName",
    "mountPath: /var/run/secrets/kubernetes.io/serviceaccount",
    "blob: " + b64("password=hunter2hunter2 and more text"),
    "  " + b64("x" * 40)[:40],
    "  " + b64("x" * 40)[:40],
    "  " + b64("x" * 40)[40:] + "==",
    "odd: 0123456789abcdef0",
    "config: " + b"password=q8MxVj5l3V26Xk~".hex(),
    f"token: {LITERAL}",
    f"dump {b64(LITERAL)}",
    *PEM.splitlines()[:3],
    "\x1b[31mpassword=\x1b[0mhunter2hunter2",
    "naïve ſecret: q8MxVj5l3V26Xk",
    "prİvate_key=q8MxVj5l3V26Xk",
]


@st.composite
def scanned_documents(draw: st.DrawFn) -> bytes:
    """documents() with lines the scanner reads, and detector examples, mixed in."""
    lines = draw(documents()).decode().splitlines()
    extra = st.sampled_from([*SCANNED_LINES, *(example for _, example in POSITIVES[::7])])
    for line in draw(st.lists(extra, max_size=8)):
        lines.insert(draw(st.integers(0, len(lines))), line)
    return "".join(line + "\n" for line in lines).encode()


ARGVS = [["get", "pods", "-o", "yaml"], ["logs", "web"], ["get", "secrets", "-o", "yaml"],
         ["describe", "secret", "s"]]


@settings(max_examples=300, deadline=None)
@given(st.data(), scanned_documents(), st.sampled_from(ARGVS))
def test_the_native_path_masks_exactly_what_the_reference_masks(
    data: st.DataObject, text: bytes, argv: list[str]
) -> None:
    # every Hyperscan shortcut on (the structure's noted lines from the first byte), and a
    # minted token's value and a stored key's digests: byte for byte what the pure-re
    # reference makes of the same chunks
    pytest.importorskip("hyperscan")
    chunks = data.draw(chunked(text))
    digests = literal_digests([LITERAL, PEM])

    def masked() -> bytes:
        return stream(chunks, masker_for(argv, DETECTORS, [LITERAL[::-1]], digests=digests))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mask, "NOTED_AFTER", 0)
        fast = masked()
    with reference_masking():
        assert masked() == fast


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_literals_are_found_where_one_regex_finds_them(data: st.DataObject) -> None:
    # values that are prefixes of one another and overlap: the longest at the first place wins
    base = data.draw(st.text("ab=", min_size=6, max_size=9))
    more = data.draw(st.lists(st.text("ab=", max_size=3), max_size=2))
    literals = [base, *(base + tail for tail in more)]
    forms = mask._literal_forms(literals)
    pieces = [*forms, *literals, "a", "b", "=", "\n"]
    text = "".join(data.draw(st.lists(st.sampled_from(pieces), max_size=12)))
    regex = re.compile("|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)))
    assert mask._literal_spans(text, forms) == [found.span() for found in regex.finditer(text)]


@given(st.text())
def test_fast_lowering_agrees_on_what_keywords_can_see(text: str) -> None:
    lowered = text.lower()
    if len(lowered) == len(text):  # else the keyword pre-filter is not used
        fast = mask._lower(text)
        assert len(fast) == len(text)
        assert [c if c.isascii() else "" for c in fast] == [
            c if c.isascii() else "" for c in lowered
        ]


@pytest.mark.parametrize(("name", "example"), POSITIVES)
def test_a_secret_among_ordinary_lines_is_masked(name: str, example: str) -> None:
    # the lines around it are passed on in runs; the secret's line must still be scanned
    head = "kind: List\nitems:\n- metadata:\n    namespace: default\n    uid: 6f1c2d3e\n"
    data = f"{head}    note: {example}\n    other: value\n{example}\n".encode()
    whole = mask_text(data.decode()).encode()
    secrets = [example[start:end] for start, end in DETECTORS[name].find(example)]
    assert secrets and not any(secret.encode() in whole for secret in secrets)
    for size in (1, 7, 64):
        chunks = [data[i : i + size] for i in range(0, len(data), size)]
        assert stream(chunks) == whole, f"{name}: chunks of {size}"


SPEC = (
    "custom-columns=NAME:.metadata.name,PASSWORD:{.data.password},TYPE:.type,"
    "NOTE:.metadata.annotations.note"
)


def test_custom_columns_of_secrets_mask_the_cells_that_hold_values() -> None:
    table = (
        "NAME       PASSWORD                       TYPE     NOTE\n"
        "db         aHVudGVyMmh1bnRlcjI=           Opaque   rotate-me-soon\n"
        "web-cred   <none>                         Opaque   <none>\n"
    )
    masker = masker_for(("get", "secrets", "-o", SPEC), DETECTORS)
    out = masker.mask_text(table)
    lines = out.splitlines()
    assert lines[0] == table.splitlines()[0]
    assert lines[1].startswith("db         «masked:command-output»") and "Opaque" in lines[1]
    assert "aHVudGVy" not in out and "rotate-me-soon" not in out  # annotations may hold values
    assert lines[2] == table.splitlines()[2]
    # each column still starts where its title does
    assert lines[1].index("Opaque") == lines[0].index("TYPE")


def test_a_custom_columns_header_it_cannot_read_masks_everything() -> None:
    masker = masker_for(("get", "secrets", "-o", SPEC), DETECTORS)
    out = masker.mask_text("something else\ndb aHVudGVyMg== Opaque\n")
    assert out == "«masked:command-output»\n«masked:command-output»\n"


@given(st.lists(st.text(alphabet="abcdefghXYZ0123456789+/=", min_size=1, max_size=30),
                min_size=1, max_size=8),
       st.integers(1, 40))
@settings(max_examples=150, deadline=None)
def test_no_value_of_a_custom_columns_table_survives(values: list[str], chunk: int) -> None:
    table = "NAME       VALUE\n" + "".join(f"{f'n{i}':11}{v}\n" for i, v in enumerate(values))
    spec = "custom-columns=NAME:.metadata.name,VALUE:.data.v"
    masker = masker_for(("get", "secrets", "-o", spec), DETECTORS)
    data = table.encode()
    out = b"".join(masker.feed(data[i : i + chunk]) for i in range(0, len(data), chunk))
    out += masker.flush()
    shown = out.decode().splitlines()
    assert shown[0] == "NAME       VALUE"
    assert all(line[11:] == "«masked:command-output»" for line in shown[1:])


# labels, keywords of the multi-line detectors (whole and cut), line breaks, colour, İ and ſ
CONTINUED_PIECES = ["Password", "passw", "ord", "api key", "api ", "Token", "secret", ":", "\n"]
CONTINUED_PIECES += [" ", "\n\n", "gCmH2x8Q__o8gPq_briA", "-----BEGIN ", "PRIVATE KEY-----"]
CONTINUED_PIECES += ["-----END PRIVATE KEY-----", "MIIEvQIBADANBg", "random_password", "x"]
CONTINUED_PIECES += ["\u0130", "\u017f", "\x1b[1m", "«"]
CONTINUED_TEXT = st.lists(st.sampled_from(CONTINUED_PIECES), max_size=30).map("".join)


@settings(max_examples=600, deadline=None)
@given(CONTINUED_TEXT, CONTINUED_TEXT)
@example("log\nthe passw", "ord:\n\ngCmH2x8Q__o8gPq_briA\n")  # a keyword across the meeting
@example("log\n", "\u0130" + " " * 60 + "Password:\n\ngCmH2x8Q__o8gPq_briA\n")  # İ: lower()
@example("x\n", "\u017f" + " " * 60 + "Password:\n\ngCmH2x8Q__o8gPq_briA\n")  # is longer; ſ
@example("Password:\n", "\ngCmH2x8Q__o8gPq_briA\n")  # the label before the meeting
def test_continued_matches_with_the_keywords_spans_found_are_those_of_a_full_search(
    context: str, text: str
) -> None:
    # `mask` hands `_continued` the detectors whose keywords `spans` found in the text, so
    # that only the meeting of context and text is searched again: the same matches
    scanner = mask._Scanner(DETECTORS, [], mask.default_rules().structure)
    present: set[Detector | None] = set()
    scanner.spans(text, present=present)
    assert scanner._continued(context, text, present) == scanner._continued(context, text)


PREFILTERED = [d for d in DETECTORS.values() if d.prefilter]


def assert_prefilter_ends_in_every_match(detector: Detector, text: str) -> None:
    """Each match of the detector's regex, over the text or over any of its lines (the
    stretches it runs on), holds an end of its prefilter after its first character."""
    gate = mask._Prefilters((detector,)).gate(text, True)
    if gate is None:  # the reference runs: nothing to hold
        return
    starts = [0, *(at + 1 for at, char in enumerate(text) if char == "\n")]
    line_ends = [*(start - 1 for start in starts[1:]), len(text)]
    regions = [(0, len(text)), *zip(starts, line_ends, strict=True)]
    for first, last in regions:
        for match in detector.pattern.finditer(text, first, last):
            assert mask._opens(gate, detector, match.start(), match.end()), (match, text)


@pytest.mark.parametrize("detector", PREFILTERED, ids=lambda d: d.name)
def test_a_prefilter_ends_inside_every_match_of_its_detector(detector: Detector) -> None:
    pytest.importorskip("hyperscan")
    from mask_corpus import cases

    texts = [example for d in DETECTORS.values() for example in (*d.positive, *d.negative)]
    texts += [case.text for case in cases()] + SCANNED_LINES
    for text in texts:
        assert_prefilter_ends_in_every_match(detector, text)


@settings(max_examples=500, deadline=None)
@given(st.one_of(generic_lines(), CONTINUED_TEXT, scanned_documents().map(bytes.decode)))
def test_prefilters_end_inside_every_match_of_generated_text(text: str) -> None:
    pytest.importorskip("hyperscan")
    for detector in PREFILTERED:
        assert_prefilter_ends_in_every_match(detector, text)


def test_the_native_scans_wait_for_a_long_output(monkeypatch: pytest.MonkeyPatch) -> None:
    # compiling them costs more than a short output takes to mask without them
    pytest.importorskip("hyperscan")
    monkeypatch.setattr(mask, "_NATIVE", {})
    monkeypatch.setattr(mask, "_NOTED", {})
    for cache in NATIVE_CACHES:
        cache.cache_clear()
    try:
        prefilters = mask._detector_tables(tuple(DETECTORS.values())).prefilters
        masked = mask_text("api_key=q8MxVj5l3V26Xk\n")
        assert masked == "api_key=«masked:generic-secret-assignment»\n"
        assert not mask._NATIVE and not mask._NOTED and prefilters.gate("x", False) is None
        masker = Masker(DETECTORS)
        masker.feed(b"a: b\n" * (mask.NOTED_AFTER // 5 + 1))
        assert mask._NATIVE["tokens"] is not None and prefilters.gate("x", False) is not None
        mask.native_scans(DETECTORS, mask.default_rules().structure)
        assert all(scan is not None for scan in (*mask._NATIVE.values(), *mask._NOTED.values()))
    finally:
        for cache in NATIVE_CACHES:
            cache.cache_clear()
