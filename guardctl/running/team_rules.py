"""The detectors that mask a run's output: guardctl's own, and a team's gitleaks rules (the
config's `detectors:` list, or `guardctl mask --rules-from FILE`) ahead of them, so that a
mask bears the team's rule id where both match."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from guardctl.env import Environment
from guardctl.errors import UsageError
from guardctl.masking.detectors import Detector, default_detectors


class Detectors(NamedTuple):
    detectors: Mapping[str, Detector]
    problems: tuple[str, ...]  # team rules left out, one line each


def detectors_for(env: Environment, extra: Sequence[str] = ()) -> Detectors:
    """The detectors for `env` (its config's `detectors:`) and `extra` gitleaks files;
    UsageError naming the file when one cannot be read or is no TOML."""
    from guardctl.config import load_detector_files

    files = [*load_detector_files(env.config_path, env.cache_dir), *extra]
    if not files:
        return Detectors(default_detectors(), ())
    from guardctl.masking.gitleaks import import_rules

    imported: dict[str, Detector] = {}
    problems: list[str] = []
    for name in files:
        try:
            text = Path(name).expanduser().read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise UsageError(f"cannot read the gitleaks rules {name}: {err}") from err
        try:
            found = import_rules(text, name)
        except ValueError as err:
            raise UsageError(str(err)) from err
        imported.update((d.name, d) for d in found.detectors)
        problems.extend(found.problems)
    return Detectors({**imported, **default_detectors()}, tuple(problems))
