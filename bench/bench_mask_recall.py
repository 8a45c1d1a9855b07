"""Recall and keep of guardctl's masker on the labelled corpus, beside its peers.

Run: python bench/bench_mask_recall.py   (detect-secrets from the `bench` extra, if installed)

On the same cases (tests/corpus/mask: realistic kubectl output, every secret string marked),
for each masker: the share of secret strings that come through masked (recall: a secret
shown whole or by any run of 12 of its characters counts as leaked) and the share of the
secret-free lines kept as they were (keep). The peers:

* detect-secrets (Yelp), default plugins: each value it reports is hidden wherever it occurs;
* "Secret data only": guardctl's structure rules alone (the values of Secret objects' data,
  credential keys, secret-looking env names), which is what a rule that masks only
  `kind: Secret` data does.

Prints a table; asserts nothing.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from mask_corpus import Case, Result, cases, guardctl_mask, measure  # noqa: E402

Mask = Callable[[list[str], str], str]


def structure_only(argv: list[str], text: str) -> str:
    from guardctl.masking.mask import masker_for

    masker = masker_for(argv, {})
    return (masker.feed(text.encode()) + masker.flush()).decode()


def detect_secrets_mask() -> Mask | None:
    try:
        from detect_secrets.core.secrets_collection import SecretsCollection
        from detect_secrets.settings import default_settings
    except ImportError:
        return None

    def mask(_argv: list[str], text: str) -> str:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "output.txt"
            path.write_text(text, encoding="utf-8")
            found = SecretsCollection()
            with default_settings():
                found.scan_file(str(path))
            values = {s.secret_value for _, s in found if s.secret_value}
        for value in sorted(values, key=len, reverse=True):
            text = text.replace(value, "«masked»")
        return text

    return mask


def score(results: list[Result]) -> tuple[float, float]:
    secrets = sum(len(r.case.secrets) for r in results)
    leaked = sum(len(r.leaked) for r in results)
    kept = sum(r.kept for r in results)
    keepable = sum(r.keepable for r in results)
    return 1 - leaked / secrets, kept / keepable


def main() -> None:
    corpus: list[Case] = cases()
    maskers: dict[str, Mask] = {"guardctl": guardctl_mask, "Secret data only": structure_only}
    peer = detect_secrets_mask()
    if peer is not None:
        maskers["detect-secrets"] = peer
    else:
        print("detect-secrets is not installed (pip install -e '.[bench]'): left out\n")
    results = {name: [measure(case, mask) for case in corpus] for name, mask in maskers.items()}
    width = max(len(c.name) for c in corpus)
    print(f"{'case':{width}}  {'secrets':>7}  " + "  ".join(f"{n:>18}" for n in maskers))
    for index, case in enumerate(corpus):
        cells = []
        for name in maskers:
            r = results[name][index]
            shown = len(case.secrets) - len(r.leaked)
            cells.append(f"{shown:>3} masked {r.kept / max(r.keepable, 1):5.1%} kept")
        row = "  ".join(f"{c:>18}" for c in cells)
        print(f"{case.name:{width}}  {len(case.secrets):>7}  {row}")
    print()
    for name in maskers:
        recall, keep = score(results[name])
        print(f"{name:18} recall {recall:6.1%}   keep {keep:6.1%}")


if __name__ == "__main__":
    main()
