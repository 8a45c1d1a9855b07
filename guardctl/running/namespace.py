"""`guardctl ns [NAME]`: the default namespace of a managed context, switched as kubens does.

The namespace is the context's `namespace` in guardctl's config file; every run writes it
into kubectl's private kubeconfig, so it applies to each command without `-n` (kubectl's
`-n` still wins), and the policy decides such a command on it. Each switch is recorded in
the audit log like an invocation: a "started" record before the file changes, a
"completed" one after, so a switch that cannot be recorded does not happen.
"""

from __future__ import annotations

import re
import shlex

from guardctl.config import Config, load_contexts, save_config
from guardctl.env import Environment
from guardctl.errors import UnsafeError, UsageError
from guardctl.status import ExitStatus

# a namespace name is a DNS-1123 label
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
# kubectl's namespace when a context names none
KUBECTL_DEFAULT = "default"


def managed(env: Environment, context: str | None) -> Config:
    """The managed context `context` names (None: the default one); UnsafeError with the
    fix when guardctl holds none."""
    from guardctl.running.creds import require_config

    return require_config(env, context)


def current(env: Environment, context: str | None) -> str:
    """The namespace commands without `-n` run in."""
    return managed(env, context).namespace or KUBECTL_DEFAULT


def switch(env: Environment, context: str | None, name: str) -> Config:
    """Make `name` the default namespace of `context`, recorded in the audit log first."""
    from guardctl.recording import audit, recorder

    if not _LABEL.fullmatch(name):
        raise UsageError(f"{name!r} is not a namespace name (lower-case letters, digits and "
                         "'-', at most 63)")
    config = managed(env, context)
    contexts = load_contexts(env.config_path)
    assert contexts is not None  # `managed` found the context in it
    argv = ["guardctl", "ns", name, *(["--context", context] if context else [])]
    log = audit.AuditLog(audit.log_path(env.state_dir))
    session = recorder.check_session_id(
        env.environ.get("GUARDCTL_SESSION") or recorder.new_session_id()
    )
    handle = log.start(session=session, argv=argv, line=shlex.join(argv))
    changed = config._replace(namespace=name)
    try:
        save_config(env.config_path, contexts.with_context(changed))
    except OSError as err:
        log.finish(handle, ExitStatus.UNSAFE)
        raise UnsafeError(f"cannot write {env.config_path}: {err.strerror or err}") from err
    log.finish(handle, ExitStatus.OK)
    return changed
