"""The labelled masking corpus (tests/corpus/mask, read by tests/mask_corpus.py), through the
masker `guardctl ARGS` would use: every secret string masked (no run of it shown), the
secret-free lines kept as they were, YAML and JSON still parsing, tables keeping their
columns. Each file is one case; grow the corpus with every leak or over-masking found.
"""

from __future__ import annotations

import json

import pytest
import yaml
from mask_corpus import Case, cases, guardctl_mask, measure

CASES = cases()


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 12
    assert sum(len(c.secrets) for c in CASES) >= 75


@pytest.mark.parametrize("chunk", [1 << 20, 4096, 97])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_secret_is_masked_and_the_rest_kept(case: Case, chunk: int) -> None:
    result = measure(case, lambda argv, text: guardctl_mask(argv, text, chunk))
    assert result.leaked == [], f"{case.name}: shown in part or whole"
    assert result.kept == result.keepable, f"{case.name}: secret-free lines were changed"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_structured_output_still_parses(case: Case) -> None:
    output = guardctl_mask(case.argv, case.text)
    if "yaml" in case.argv:
        assert len(list(yaml.safe_load_all(output))) == len(list(yaml.safe_load_all(case.text)))
    if "json" in case.argv:
        json.loads(output)


@pytest.mark.parametrize("case", [c for c in CASES if c.name.startswith("table-")],
                         ids=lambda c: c.name)
def test_tables_keep_their_columns(case: Case) -> None:
    output = guardctl_mask(case.argv, case.text)
    header = case.text.splitlines()[0]
    starts = [i for i, c in enumerate(header) if c != " " and (i == 0 or header[i - 1] == " ")]
    for line in output.splitlines():
        assert all(i == 0 or line[i - 1] == " " for i in starts if i < len(line)), line
