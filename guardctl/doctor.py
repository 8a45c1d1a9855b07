"""`guardctl doctor`: is this machine set up so that guardctl can gate the agent?

One line per check, `ok`, `warn` or `fail`, each saying what to fix. Exit 0 when nothing
failed. A check that cannot tell (an unexpected guardctl or OS error) reports `fail`:
a diagnosis that guesses "fine" is worse than none.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from guardctl.env import Environment
from guardctl.errors import GuardError
from guardctl.status import ExitStatus

VERSION_TIMEOUT_SECONDS = 10
# `kubectl create token`, which minting needs, arrived in kubectl 1.24
MIN_KUBECTL_MINOR = 24
# unknown kubectl commands and flags named in one doctor line
SHOWN_UNKNOWN = 5
PROBE_ENTRY = "doctor-probe"


class Level(Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Finding:
    level: Level
    topic: str
    message: str

    def line(self) -> str:
        return f"{self.level.value:<4}  {self.topic}: {self.message}"


Check = Callable[[Environment], list[Finding]]


def _ok(topic: str, message: str) -> Finding:
    return Finding(Level.OK, topic, message)


def _warn(topic: str, message: str) -> Finding:
    return Finding(Level.WARN, topic, message)


def _fail(topic: str, message: str) -> Finding:
    return Finding(Level.FAIL, topic, message)


# --------------------------------------------------------------------------- kubectl


def kubectl_version(kubectl: str) -> str:
    """kubectl's client gitVersion (`v1.32.4`); OSError/ValueError when it cannot say."""
    result = subprocess.run(
        [kubectl, "version", "--client", "-o", "json"],
        stdin=subprocess.DEVNULL, capture_output=True, timeout=VERSION_TIMEOUT_SECONDS,
        check=False,
    )
    if result.returncode != 0:
        raise ValueError(f"`kubectl version --client` exited with {result.returncode}")
    version = json.loads(result.stdout).get("clientVersion", {}).get("gitVersion")
    if not isinstance(version, str) or not version:
        raise ValueError("`kubectl version --client` printed no gitVersion")
    return version


def _minor(version: str) -> int | None:
    parts = version.lstrip("v").split(".")
    digits = "".join(ch for ch in parts[1] if ch.isdigit()) if len(parts) > 1 else ""
    return int(digits) if digits else None


def check_kubectl(env: Environment) -> list[Finding]:
    from guardctl.running.runner import find_kubectl

    kubectl = find_kubectl(env)
    try:
        version = kubectl_version(kubectl)
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        return [_fail("kubectl", f"{kubectl} does not answer `version --client` ({exc}): "
                                 "reinstall kubectl or point GUARDCTL_KUBECTL at a working one")]
    minor = _minor(version)
    if minor is None or minor < MIN_KUBECTL_MINOR:
        return [_fail("kubectl", f"{kubectl} is {version}; guardctl needs 1.{MIN_KUBECTL_MINOR} "
                                 "or newer (for `kubectl create token`)")]
    return [_ok("kubectl", f"{kubectl} ({version})")]


def unknown_inputs(kubectl: str, env: Environment) -> list[str]:
    """Commands and flags the installed kubectl has and guardctl's flag table does not
    (`kubectl PATH`, `kubectl PATH --flag`), from kubectl's own help; cached per binary."""
    from guardctl import kubectl_help, stampcache
    from guardctl.firewall.flagtable import ROOT, flag_table

    entry = stampcache.entry(env.cache_dir, "kubectl-help", [Path(kubectl)])
    cached = entry.read() if entry is not None else None
    if isinstance(cached, list):
        return [str(item) for item in cached]
    # an empty home and kubeconfig: help reads no settings and reaches no cluster
    quiet = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "LANG": "C",
             "KUBECONFIG": "/nonexistent/kubeconfig"}
    tree = kubectl_help.walk(kubectl, quiet)
    table = flag_table()
    found = [f"kubectl {path}" for path in tree if path and path not in table.paths]
    found += [
        f"kubectl {path} --{flag['name']}".replace("  ", " ")
        for path, help_ in tree.items()
        if path in table.paths or path == ROOT
        for flag in help_.flags
        if table.flag(path, flag["name"]) is None
    ]
    found += [
        f"kubectl --{flag['name']}" for flag in kubectl_help.global_flags(kubectl, quiet)
        if table.flag(ROOT, flag["name"]) is None
    ]
    found = list(dict.fromkeys(found))
    if entry is not None:
        entry.write(found)
    return found


def check_kubectl_inputs(env: Environment) -> list[Finding]:
    from guardctl.firewall.flagtable import flag_table
    from guardctl.running.runner import find_kubectl

    kubectl = find_kubectl(env)
    try:
        unknown = unknown_inputs(kubectl, env)
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        return [_warn("kubectl-flags", f"could not read {kubectl}'s help ({exc}); guardctl asks "
                                       "a human for any flag it does not know")]
    if not unknown:
        return [_ok("kubectl-flags", f"guardctl knows every command and flag of {kubectl}")]
    shown = ", ".join(f"`{item}`" for item in unknown[:SHOWN_UNKNOWN])
    more = f" and {len(unknown) - SHOWN_UNKNOWN} more" if len(unknown) > SHOWN_UNKNOWN else ""
    return [_warn(
        "kubectl-flags",
        f"{kubectl} has {len(unknown)} commands or flags guardctl's table (from kubectl "
        f"{flag_table().version}) does not know: {shown}{more}; a line that uses one needs a "
        "human's approval. Upgrade guardctl, or use a kubectl of the table's version",
    )]


# --------------------------------------------------------------------------- keyring, creds


def _service(env: Environment) -> str:
    from guardctl.config import DEFAULT_KEYRING_SERVICE, load_config

    try:
        config = load_config(env.config_path)
    except GuardError:
        return DEFAULT_KEYRING_SERVICE  # the credentials check reports the broken config
    return config.keyring_service if config else DEFAULT_KEYRING_SERVICE


def check_keyring(env: Environment) -> list[Finding]:
    from guardctl.running.creds import PLAINTEXT_BACKENDS, Vault

    vault = Vault(_service(env))
    backend = type(vault.backend)
    name = f"{backend.__module__}.{backend.__name__}"
    vault.get(PROBE_ENTRY)  # a read: a locked or broken keyring raises here
    if backend.__name__ in PLAINTEXT_BACKENDS:
        return [_warn("keyring", f"{name} keeps credentials unencrypted on disk"
                                 f"{vault.where(' (', ')')}: fine for a demo, not for a real "
                                 "cluster (unset PYTHON_KEYRING_BACKEND or install a system "
                                 "keyring)")]
    return [_ok("keyring", f"{name} is usable")]


def check_credentials(env: Environment) -> list[Finding]:
    from guardctl.config import load_contexts
    from guardctl.running import creds

    contexts = load_contexts(env.config_path)
    if contexts is None:
        return [_fail("credentials", f"no config at {env.config_path}: run `guardctl creds "
                                     "import --service-account NS/NAME`")]
    found = []
    for config in contexts.all:
        creds.load_credential(config)  # missing or damaged: UnsafeError, reported as fail
        found.append(_ok("credentials", f"context {config.context!r} ({config.server}): "
                                        f"{config.credential} credential in the keyring; "
                                        f"tokens for {config.service_account}"))
    token = next((ln for ln in creds.status(env) if ln.startswith("agent token:")),
                 "agent token: unknown")
    return [*found, _ok("credentials", token)]


def check_plugins(env: Environment) -> list[Finding]:
    """Each kubectl plugin the config lists is a program guardctl can run."""
    import os

    from guardctl.config import load_contexts

    contexts = load_contexts(env.config_path)
    listed = contexts.plugins if contexts is not None else ()
    if not listed:
        return [_ok("plugins", "none listed: kubectl plugins are unknown commands")]
    return [
        _ok("plugins", f"{name}: {path}")
        if os.path.isfile(path) and os.access(path, os.X_OK)
        else _fail("plugins", f"{name}: {path} is not a program guardctl can run: fix "
                              f"`plugins:` in {env.config_path}")
        for name, path in listed
    ]


def check_detectors(env: Environment) -> list[Finding]:
    """The team's gitleaks rule files (`detectors:`) can be read, and which rules are left out."""
    from guardctl.config import load_detector_files
    from guardctl.running.team_rules import detectors_for

    files = load_detector_files(env.config_path, env.cache_dir)
    if not files:
        return [_ok("detectors", "guardctl's own detectors (no gitleaks rule files listed)")]
    found, problems = detectors_for(env)  # a file it cannot read: UsageError, a fail
    team = sum(name.startswith("gitleaks-") for name in found)
    result = [_ok("detectors", f"{team} gitleaks rules from {len(files)} files beside "
                               f"{len(found) - team} of guardctl's own")]
    return result + [_warn("detectors", f"left out: {problem}") for problem in problems]


# --------------------------------------------------------------------------- rules


def check_rules(env: Environment) -> list[Finding]:
    from guardctl.app import lint

    result = lint(env, ())
    if result.failures:
        return [_fail("rules", f"{result.summary}; first failure: {result.failures[0]} "
                               "(see `guardctl rules lint`)")]
    return [_ok("rules", result.summary)]


# --------------------------------------------------------------------------- state folder


def _creatable(path: Path) -> bool:
    """Whether `mkdir -p path` would work: the nearest existing ancestor is a writable folder."""
    for parent in path.parents:
        if parent.exists():
            return parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)
    return False


def check_state(env: Environment) -> list[Finding]:
    from guardctl.recording import audit, auditkey, recorder, verify

    state = env.state_dir
    if not state.exists():
        if _creatable(state):
            return [_ok("state", f"{state} does not exist yet; it is created on the first run")]
        return [_fail("state", f"{state} does not exist and cannot be created: set "
                               "GUARDCTL_HOME to a writable folder")]
    if not state.is_dir():
        return [_fail("state", f"{state} is not a folder: move it away or set GUARDCTL_HOME")]
    findings = [_mode_finding(state), _size_finding(env, state)]
    if not os.access(state, os.W_OK | os.X_OK):
        findings.append(_fail("state", f"{state} is not writable: fix its owner or permissions"))
    result = verify.verify(audit.log_path(state), recorder.cast_dir(state))
    if result.ok:
        findings.append(_ok("audit", result.message))
    elif result.torn_tail:
        findings.append(_warn("audit", result.message))
    else:
        findings.append(_fail("audit", f"{result.message}: the record was changed or damaged; "
                                       "keep a copy, then move audit.jsonl, audit.head and the "
                                       "casts away to start a new log"))
    findings.extend(_key_findings(auditkey.key_path(audit.log_path(state))))
    return findings


def _key_findings(key: Path) -> list[Finding]:
    """The audit key must be this account's alone: whoever reads it can forge records."""
    try:
        info = key.lstat()
    except FileNotFoundError:
        return []
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid != os.getuid() or mode & 0o077 or not stat.S_ISREG(info.st_mode):
        return [_fail("audit", f"{key} has mode {mode:04o} and owner uid {info.st_uid}: anyone "
                               f"who reads it can forge records; run `chmod 600 {key}` and make "
                               "it this account's")]
    return []


def _size_finding(env: Environment, state: Path) -> Finding:
    """How much the state folder holds, and whether the retention policy would prune."""
    from guardctl.recording import prune, recorder
    from guardctl.recording.retention import format_size, load_settings

    total = prune.folder_size(state)
    casts = prune.cast_files(recorder.cast_dir(state))
    in_casts = sum(c.size for c in casts)
    count = f"{len(casts)} cast{'' if len(casts) == 1 else 's'}"
    said = f"{state} holds {format_size(total)} ({format_size(in_casts)} in {count})"
    try:
        policy = load_settings(env.config_path, env.cache_dir).retention
    except GuardError as err:
        return _warn("state", f"{said}; the retention settings cannot be read: {err}")
    if policy.empty:
        return _ok("state", f"{said}; no retention policy: set `retention: {{max-age: 30d, "
                            "max-size: 2GiB}` in the config file and run `guardctl sessions "
                            "prune` regularly")
    if policy.max_size is not None and in_casts > policy.max_size:
        return _warn("state", f"{said}, more than retention.max-size: run `guardctl sessions "
                              "prune`")
    return _ok("state", said)


def _mode_finding(state: Path) -> Finding:
    mode = stat.S_IMODE(state.stat().st_mode)
    if mode & 0o077:
        return _warn("state", f"{state} has mode {mode:04o}; others may read the records: "
                              f"run `chmod 700 {state}`")
    return _ok("state", f"{state} (mode {mode:04o})")


def _duration(seconds: float) -> str:
    """`45 s`, `12 min`, `3 h`, `2 d`: how long ago, for people."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size:.0f} {unit}"
    return f"{max(seconds, 0):.0f} s"


def check_shipping(env: Environment) -> list[Finding]:
    """Each sink `ship:` names: how far it is behind the audit log, and why."""
    from guardctl.shipping import shipper
    from guardctl.shipping.backlog import nanoseconds

    findings = []
    for name in shipper.checked_names(env.config_path, env.cache_dir):
        lag = shipper.lag(env.state_dir, name)
        error = f"; last error ({lag.failure.at}): {lag.failure.error}" if lag.failure else ""
        if lag.pending == 0:
            findings.append(_ok("ship", f"{name}: every record shipped"))
            continue
        records = f"{lag.pending} record{'' if lag.pending == 1 else 's'}"
        written = nanoseconds(lag.oldest)
        age = f" ({_duration(time.time() - written / 1e9)} ago)" if written is not None else ""
        findings.append(_warn(
            "ship", f"{name}: {records} not shipped, the oldest from {lag.oldest}{age}{error}; "
                    "run `guardctl audit ship` (a broker retries by itself)"
        ))
    return findings


# --------------------------------------------------------------------------- shim


def first_on_path(env: Environment, name: str) -> Path | None:
    """The first executable `name` in an absolute PATH folder, as a shell would find it."""
    for folder in env.environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = Path(folder) / name
        if os.path.isabs(folder) and candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def check_shim(env: Environment) -> list[Finding]:
    from guardctl.running.runner import is_shim

    how = ("run `guardctl shim install DIR` and put DIR first on the agent's PATH, so the "
           "agent's `kubectl` goes through guardctl")
    found = first_on_path(env, "kubectl")
    if found is None:
        return [_warn("shim", f"no kubectl on PATH: {how}")]
    if is_shim(found):
        return [_ok("shim", f"the first kubectl on PATH is the guardctl shim ({found})")]
    return [_warn("shim", f"the first kubectl on PATH is the real one ({found}), which an agent "
                          f"with this PATH can call directly: {how}")]


# --------------------------------------------------------------------------- mode

SAME_USER = (
    "same-user mode: no broker is configured, so guardctl's guarantees are advisory: an "
    "agent running as this user can read this user's files, its stored credential and "
    "records included. For a hard boundary, run `guardctl broker serve` under another "
    "account and set GUARDCTL_BROKER for the agent (README: \"The broker\")"
)


def check_mode(env: Environment) -> list[Finding]:
    """Which mode is in force; with a broker, whether it answers and how it sees us."""
    from guardctl.runtime import broker_path

    path = broker_path(env.environ)
    if path is None:
        return [_warn("mode", SAME_USER)]
    proc = subprocess.run(
        [sys.executable, "-m", "guardctl", "broker", "status"], env=dict(env.environ),
        stdin=subprocess.DEVNULL, capture_output=True, timeout=VERSION_TIMEOUT_SECONDS,
        check=False,
    )
    text = proc.stdout.decode("utf-8", "replace").strip().replace("\n", "; ")
    if proc.returncode != 0:
        reason = proc.stderr.decode("utf-8", "replace").strip().removeprefix("guardctl: ")
        return [_fail("mode", f"broker mode, but {reason}")]
    return [_ok("mode", f"broker mode: {path}: {text}")]


def check_local_credentials(env: Environment) -> list[Finding]:
    """With a broker the agent needs no credential: warn about a kubeconfig it can read."""
    from guardctl.running.creds import default_kubeconfig

    path = default_kubeconfig(env)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return [_ok("credentials", f"no kubeconfig readable here ({path}): the broker holds them")]
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        doc = None
    users = doc.get("users") if isinstance(doc, dict) else None
    holding = [
        str(u.get("name")) for u in users or []
        if isinstance(u, dict) and isinstance(u.get("user"), dict) and u["user"]
    ]
    if holding:
        return [_warn("credentials", f"{path} holds credentials of {', '.join(holding)}, which "
                                     "this account can read: with a broker it needs none; "
                                     "remove them")]
    return [_ok("credentials", f"{path} holds no credentials")]


# --------------------------------------------------------------------------- running

CHECKS: tuple[tuple[str, Check], ...] = (
    ("mode", check_mode),
    ("kubectl", check_kubectl),
    ("kubectl-flags", check_kubectl_inputs),
    ("keyring", check_keyring),
    ("credentials", check_credentials),
    ("plugins", check_plugins),
    ("detectors", check_detectors),
    ("rules", check_rules),
    ("state", check_state),
    ("ship", check_shipping),
    ("shim", check_shim),
)
# an agent's side of a broker: the broker checks its own kubectl, keyring, rules and state
BROKER_CLIENT_CHECKS: tuple[tuple[str, Check], ...] = (
    ("mode", check_mode),
    ("credentials", check_local_credentials),
    ("shim", check_shim),
)


def findings(env: Environment, checks: tuple[tuple[str, Check], ...] = CHECKS) -> list[Finding]:
    """Every check's findings; a check that raises a guardctl or OS error becomes a `fail`."""
    found: list[Finding] = []
    for topic, check in checks:
        try:
            found.extend(check(env))
        except GuardError as exc:
            found.append(_fail(topic, str(exc)))
        except OSError as exc:
            found.append(_fail(topic, f"{exc.filename or ''} {exc.strerror or exc}".strip()))
    return found


def run(env: Environment, *, as_json: bool = False) -> int:
    """Print one line per finding (`as_json`: one JSON object); exit 0 when none failed,
    1 otherwise."""
    from guardctl.runtime import broker_path

    brokered = broker_path(env.environ) is not None
    results = findings(env, BROKER_CLIENT_CHECKS if brokered else CHECKS)
    failed = sum(f.level is Level.FAIL for f in results)
    warned = sum(f.level is Level.WARN for f in results)
    if as_json:
        found = [{"level": f.level.value, "topic": f.topic, "message": f.message}
                 for f in results]
        env.stdout.write(json.dumps({"findings": found, "failed": failed, "warnings": warned},
                                    indent=1) + "\n")
    else:
        for finding in results:
            env.stdout.write(finding.line() + "\n")
        env.stdout.write(f"{failed} failed, {warned} warnings\n")
    env.stdout.flush()
    return ExitStatus.ERROR if failed else ExitStatus.OK
