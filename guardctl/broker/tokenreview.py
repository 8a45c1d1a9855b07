"""Kubernetes ServiceAccount tokens as agent identities over TCP (`--agent-service-account`).

An agent running in a pod can show the broker its own ServiceAccount token instead of a
`gctl_` token: a projected token for the audience `guardctl-broker` (a token for the API
server is refused, so one leaked to or by another component cannot be replayed here). The
broker asks the cluster who it is with a TokenReview, made with the broker's own credential
(the one it mints with; it needs `create tokenreviews`, e.g. `system:auth-delegator`), and
serves it as the agent `system:serviceaccount:NS:NAME` when that account is one it was told
to serve. The token goes to kubectl on its stdin, never in its arguments.
"""

from __future__ import annotations

import json
import subprocess

from guardctl.broker.tokens import Refused
from guardctl.errors import GuardError

AUDIENCE = "guardctl-broker"
REVIEW_SECONDS = 8.0  # within the broker's deadline for a TCP client's hello
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"


def username(namespace: str, name: str) -> str:
    return f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"


def looks_like_jwt(token: str) -> bool:
    """A Kubernetes token (three base64url parts, a JSON header), not a `gctl_` one."""
    return token.startswith("eyJ") and token.count(".") == 2


def review(environ: dict[str, str], token: str, allowed: frozenset[str]) -> str:
    """The agent `token` names (`system:serviceaccount:NS:NAME`, one of `allowed`), by a
    TokenReview with the broker's credential; Refused when the cluster does not vouch for
    it, for this audience, as an account this broker serves."""
    status = _ask(environ, token)
    user = status.get("user") or {}
    name = user.get("username") if isinstance(user, dict) else None
    if status.get("authenticated") is not True or not isinstance(name, str):
        raise Refused("the cluster does not accept this Kubernetes token")
    audiences = status.get("audiences")
    if not isinstance(audiences, list) or AUDIENCE not in audiences:
        raise Refused(f"the Kubernetes token of {name} is not for the audience {AUDIENCE}")
    if name not in allowed:
        raise Refused(f"{name} is not an account this broker serves")
    return name


def _ask(environ: dict[str, str], token: str) -> dict[str, object]:
    """The TokenReview's status; Refused when it cannot be had."""
    from guardctl.env import Environment
    from guardctl.running.creds import load_credential, require_config
    from guardctl.running.kubeconfig import private_kubeconfig
    from guardctl.running.kubectl_env import mint_environ
    from guardctl.running.runner import find_kubectl

    env = Environment(environ=environ)
    body = json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                       "spec": {"token": token, "audiences": [AUDIENCE]}})
    try:
        config = require_config(env)
        stanza = load_credential(config)
        kubectl = find_kubectl(env)
        with private_kubeconfig(env, config.server, config.certificate_authority_data, stanza,
                                config.namespace) as path:
            result = subprocess.run(
                # the object, not `create --raw`: kubectl sends it whole (not chunked); the
                # API server validates it, so kubectl's own download of the schema is skipped
                [kubectl, "--kubeconfig", str(path), "create", "-f", "-", "-o", "json",
                 "--validate=false"],
                input=body.encode(), env=mint_environ(env.environ, path), capture_output=True,
                timeout=REVIEW_SECONDS, check=False,
            )
    except (GuardError, OSError, subprocess.TimeoutExpired) as err:
        raise Refused(f"cannot check a Kubernetes token ({type(err).__name__})") from None
    if result.returncode != 0:  # its stderr is not repeated: it might quote the request
        raise Refused(f"the cluster's TokenReview failed (kubectl exited {result.returncode})")
    try:
        status = json.loads(result.stdout).get("status")
    except (ValueError, AttributeError):
        status = None
    if not isinstance(status, dict):
        raise Refused("the cluster's TokenReview said nothing readable")
    return status
