"""Template output of Secrets that prints only names stays readable; any other template of
Secrets is masked whole (issue 12: over-masking with `--for`)."""

from __future__ import annotations

import pytest

from guardctl.fieldpaths import names_only
from guardctl.masking.detectors import default_detectors
from guardctl.masking.mask import masker_for


@pytest.mark.parametrize(
    ("output", "template"),
    [
        ("jsonpath", "{.items[*].metadata.name}"),
        ("jsonpath", '{range .items[*]}{.metadata.namespace}{"/"}{.metadata.name}{"\\n"}{end}'),
        ("jsonpath", "{.items[*].metadata.labels.app}"),
        ("jsonpath", '{.items[?(@.type=="kubernetes.io/tls")].metadata.name}'),
        ("jsonpath", "{.metadata.name} {.type}"),
        ("go-template", '{{range .items}}{{.metadata.name}}{{"\\n"}}{{end}}'),
    ],
)
def test_names_only(output: str, template: str) -> None:
    assert names_only(output, template)


@pytest.mark.parametrize(
    ("output", "template"),
    [
        ("jsonpath", "{.data.password}"),
        ("jsonpath", "{.items[*].data}"),
        ("jsonpath", "{..password}"),
        ("jsonpath", "{.metadata.annotations}"),
        ("jsonpath", '{.items[?(@.data.password=="hunter2")].metadata.name}'),
        ("jsonpath", "{$}"),
        ("jsonpath", ""),
        ("go-template", '{{index .data "password"}}'),
        ("go-template", "{{.}}"),
        ("go-template", "{{range .items}}{{.data.token | base64decode}}{{end}}"),
        ("go-template-file", "names.tmpl"),
        ("custom-columns", "N:.metadata.name"),
    ],
)
def test_anything_else_is_not(output: str, template: str) -> None:
    assert not names_only(output, template)


def test_a_names_only_template_of_secrets_is_not_masked_whole() -> None:
    argv = ("get", "secrets", "-o", "jsonpath={.items[*].metadata.name}")
    masker = masker_for(argv, default_detectors())
    assert masker.mode == "structure"  # as any other output of Secrets
    assert masker.mask_text("db-credentials shop-tls regcred\n") == (
        "db-credentials shop-tls regcred\n")
    values = ("get", "secrets", "-o", "jsonpath={.items[*].data.password}")
    assert masker_for(values, default_detectors()).mode == "whole"
