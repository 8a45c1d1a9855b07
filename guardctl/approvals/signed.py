"""Signed answers: an answer from off the machine counts only when a registered approver key
signed it over the digest of the exact request that waits.

**What is shown, and its digest.** `shown(request)` is what a remote approver sees (the
webhook payload's `data`): the fields of `approvals list --json`, with the command line and
its readings masked (the diff and manifest are masked already). Its `digest` is the sha256
(hex) of the canonical JSON of `{"type": "guardctl.approval.request.v1"}` plus the
DIGEST_FIELDS of what is shown: keys sorted, no whitespace (`,` and `:`), UTF-8 with
non-ASCII characters as they are. Every value there is a string, a list of strings, a list of
objects of strings, or null, so any JSON library computes the same bytes. The digest covers
the request id, the command line and how guardctl read it, the rules, context and cluster,
the namespaces, risks, the diff and manifest, who asked, and when it was made and expires: an
answer signed over another request, or over the same one shown with other namespaces,
another command or a later expiry, does not match.

**The answer.** A JSON object: `type` ("guardctl.approval.answer.v1"), `request` (the id),
`digest`, `approved` (true/false), `reason` (the agent is told), `window_minutes` (an integer,
or null for once), `public_key` (the signer's Ed25519 public key, base64 of its 32 bytes) and
`signature`: base64 of the Ed25519 signature over the canonical JSON of all the other keys.
`guardctl approvals sign` makes one; a key is registered with `guardctl approvals keys add`,
under a name that the request and the audit record then name as `key:NAME`.

**Receiving** (`receive`, what the broker's answers listener calls): the answer must parse,
be signed (401 otherwise), by a registered key whose signature verifies (403), for the request
the address names (400), one still waiting (404) and not expired (410), with the digest of
that request as it waits (409); then `queue.answer` takes it under the request's lock, where
the first answer is final (409 for any later one). Each refusal is one line.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, NamedTuple

from guardctl.approvals.queue import GONE, AnswerError, Queue, Request, answer
from guardctl.approvals.scripted import request_json, window_minutes
from guardctl.atomic import write_atomic
from guardctl.env import Environment
from guardctl.errors import UnsafeError, UsageError
from guardctl.recording.audit import Approver, iso_time
from guardctl.status import ExitStatus

REQUEST_TYPE = "guardctl.approval.request.v1"
ANSWER_TYPE = "guardctl.approval.answer.v1"
DIGEST_FIELDS = (
    "id", "line", "readings", "rules", "context", "cluster", "namespaces", "risks", "problems",
    "diff", "manifest", "requester", "created", "expires", "window_scopes",
)
ANSWER_FIELDS = frozenset({
    "type", "request", "digest", "approved", "reason", "window_minutes", "public_key",
    "signature",
})
# what a key's name may hold: it goes into audit records as `key:NAME`
KEY_NAME = re.compile(r"[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?")
KEYS_FORMAT = 1
# an answer is a few hundred bytes; anything much bigger is not one
MAX_ANSWER_BYTES = 64 * 1024
KEY_HELP = ("make one with `openssl genpkey -algorithm ed25519 -out approver.key` and "
            "`openssl pkey -in approver.key -pubout -out approver.pub`, or `ssh-keygen -t ed25519`")


def require_cryptography() -> None:
    """UnsafeError naming the extra to install when `cryptography` (Ed25519) is missing."""
    try:
        import cryptography  # noqa: F401
    except ModuleNotFoundError:
        raise UnsafeError("signed answers need the webhook extra: "
                          "pip install 'guardctl[webhook]'") from None


class Reply(NamedTuple):
    """What the answers listener says: an HTTP status and one line."""

    status: int
    message: str


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------- the digest


def canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def shown(request: Request, now: float) -> dict[str, Any]:
    """What a remote approver is shown of `request` (masked), with its `digest`."""
    from guardctl.masking.mask import mask_text

    data = request_json(request, now)
    data["line"] = mask_text(request.line)
    data["readings"] = [mask_text(text) for text in request.readings]
    data["digest"] = shown_digest(data)
    return data


def shown_digest(data: Mapping[str, Any]) -> str:
    """The digest of what `data` shows (see the module docstring); UsageError when a field
    is missing."""
    missing = [field for field in DIGEST_FIELDS if field not in data]
    if missing:
        raise UsageError(f"the request lacks {missing[0]!r}: give the webhook's payload")
    covered = {"type": REQUEST_TYPE, **{field: data[field] for field in DIGEST_FIELDS}}
    return hashlib.sha256(canonical(covered)).hexdigest()


def request_digest(request: Request) -> str:
    """The digest of `request` as it waits (what a signed answer must carry)."""
    return str(shown(request, request.created)["digest"])


# --------------------------------------------------------------------------- keys


def keys_path(state_dir: Path) -> Path:
    return state_dir / "approvals" / "keys.json"


def load_keys(path: Path) -> dict[str, str]:
    """Registered approver keys: name -> base64 of the raw Ed25519 public key."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {str(k["name"]): str(k["public_key"]) for k in data["keys"]}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UsageError(f"cannot read the approver keys {path}: {err}; move it away and add "
                         "the keys again") from None


def _save_keys(path: Path, keys: dict[str, str]) -> None:
    from guardctl.recording.recorder import private_dir

    private_dir(path.parent)
    entries = [{"name": name, "public_key": key} for name, key in sorted(keys.items())]
    write_atomic(path, json.dumps({"v": KEYS_FORMAT, "keys": entries}, indent=1) + "\n")


def public_key_text(data: bytes, source: str) -> str:
    """base64 of the raw Ed25519 public key in `data` (PEM or OpenSSH); UsageError else."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key: object = None
    for load in (serialization.load_pem_public_key, serialization.load_ssh_public_key):
        try:
            key = load(data.strip())
            break
        except (ValueError, TypeError, UnsupportedAlgorithm):
            continue
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"{source} is not an Ed25519 public key (PEM or OpenSSH): {KEY_HELP}")
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def add_key(state_dir: Path, name: str, public_file: Path) -> str:
    """Register `public_file`'s key as approver `name`; returns what was done."""
    require_cryptography()
    if not KEY_NAME.fullmatch(name):
        raise UsageError(f"key name {name!r}: use lower-case letters, digits, '.', '_' and '-' "
                         "(at most 63, starting and ending with a letter or digit)")
    try:
        data = public_file.read_bytes()
    except OSError as err:
        raise UsageError(f"cannot read {public_file}: {err.strerror or err}") from None
    key = public_key_text(data, str(public_file))
    path = keys_path(state_dir)
    keys = load_keys(path)
    if name in keys:
        raise UsageError(f"a key named {name} is registered already: "
                         f"`guardctl approvals keys remove {name}` first")
    same = [other for other, text in keys.items() if text == key]
    if same:
        raise UsageError(f"this key is registered already, as {same[0]}")
    _save_keys(path, {**keys, name: key})
    return f"registered {name}: its signed answers count as key:{name}"


def remove_key(state_dir: Path, name: str) -> str:
    path = keys_path(state_dir)
    keys = load_keys(path)
    if name not in keys:
        raise UsageError(f"no approver key named {name!r} is registered")
    _save_keys(path, {k: v for k, v in keys.items() if k != name})
    return f"removed {name}: its answers no longer count"


def list_keys(state_dir: Path) -> list[str]:
    keys = load_keys(keys_path(state_dir))
    return [f"{name}\ted25519 {key}" for name, key in sorted(keys.items())]


# --------------------------------------------------------------------------- signing


def _private_key(data: bytes) -> Any:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    for load in (serialization.load_pem_private_key, serialization.load_ssh_private_key):
        try:
            key = load(data, None)
        except TypeError:
            raise UsageError("the key is encrypted: give an unencrypted copy (kept where only "
                             "you can read it)") from None
        except (ValueError, UnsupportedAlgorithm):
            continue
        if isinstance(key, Ed25519PrivateKey):
            return key
    raise UsageError(f"--key is not an Ed25519 private key (PEM or OpenSSH): {KEY_HELP}")


def make_answer(
    data: Mapping[str, Any], private_key: bytes, *, approved: bool, reason: str = "",
    minutes: int | None = None,
) -> dict[str, Any]:
    """A signed answer to the request `data` shows (the webhook payload's `data`).

    The digest is computed here from what is shown, so what is signed is what the approver
    read; a payload whose own `digest` differs was changed on its way (UnsafeError)."""
    from cryptography.hazmat.primitives import serialization

    require_cryptography()
    digest = shown_digest(data)
    if data.get("digest") != digest:
        raise UnsafeError("the payload's digest does not match what it shows: it was changed "
                          "on its way; nothing was signed")
    key = _private_key(private_key)
    public = key.public_key().public_bytes(serialization.Encoding.Raw,
                                          serialization.PublicFormat.Raw)
    body: dict[str, Any] = {
        "type": ANSWER_TYPE, "request": str(data["id"]), "digest": digest,
        "approved": approved, "reason": reason, "window_minutes": minutes,
        "public_key": base64.b64encode(public).decode(),
    }
    body["signature"] = base64.b64encode(key.sign(canonical(body))).decode()
    return body


def _expires(data: Mapping[str, Any]) -> float:
    import calendar

    text = str(data.get("expires", ""))
    try:
        return calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        raise UsageError(f"the request's expiry {text!r} is not a time") from None


def read_payload(source: IO[bytes], name: str) -> dict[str, Any]:
    """The request a payload shows: the webhook body's `data`, or the object itself."""
    try:
        body = json.loads(source.read())
    except (ValueError, OSError) as err:
        raise UsageError(f"{name} is not the webhook's JSON payload: {err}") from None
    data = body.get("data", body) if isinstance(body, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise UsageError(f"{name} is not the webhook's JSON payload (no request id)")
    return data


def sign_command(
    env: Environment, data: dict[str, Any], key_file: Path, *, approved: bool, reason: str,
    window: str | None, post: str | None, ca: str | None,
) -> int:
    """`guardctl approvals sign`: say what is signed (stderr), print the answer (stdout), and
    with `post`, send it to the broker's answers listener."""
    if not approved and not reason.strip():
        raise UsageError("--deny needs --reason TEXT: the agent is told why")
    if not approved and window is not None:
        raise UsageError("--window goes with --approve")
    minutes = window_minutes(window) if window is not None else None
    expires = _expires(data)
    if expires < time.time():
        raise UnsafeError(f"request {data['id']} expired at {data['expires']}; nothing was signed")
    try:
        private = key_file.read_bytes()
    except OSError as err:
        raise UsageError(f"cannot read --key {key_file}: {err.strerror or err}") from None
    body = make_answer(data, private, approved=approved, reason=reason, minutes=minutes)
    namespaces = ", ".join(n or "(context default)" for n in data.get("namespaces") or [])
    verdict = "approve" + (f" for {minutes} min" if minutes else "") if approved else "deny"
    env.stderr.write(f"signing: {verdict} request {data['id']}: {data.get('line')} | context "
                     f"{data.get('context') or '-'}, cluster {data.get('cluster') or '-'} | "
                     f"namespaces {namespaces or '-'} | expires {data.get('expires')}\n")
    env.stdout.write(json.dumps(body) + "\n")
    if post is None:
        return ExitStatus.OK
    status, text = _post(post, str(data["id"]), json.dumps(body).encode(), ca)
    if not 200 <= status < 300:
        raise UnsafeError(f"the broker refused the answer: HTTP {status}: {text}")
    env.stderr.write(f"the broker took the answer: {text}\n")
    return ExitStatus.OK


def _post(base: str, request_id: str, body: bytes, ca: str | None) -> tuple[int, str]:
    import ssl
    import urllib.error
    import urllib.request

    url = f"{base.rstrip('/')}/v1/approvals/{request_id}"
    context = ssl.create_default_context(cafile=ca) if ca else None
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            return response.status, _first_line(response.read())
    except urllib.error.HTTPError as err:
        return err.code, _first_line(err.read())
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise UnsafeError(f"cannot reach {base}: {getattr(err, 'reason', err)}") from None


def _first_line(data: bytes) -> str:
    return data.decode("utf-8", "replace").strip().split("\n", 1)[0][:300]


# --------------------------------------------------------------------------- receiving


def _parse(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise Refused(400, "not a JSON answer: make one with `guardctl approvals sign`")
    if not data.get("signature"):
        raise Refused(401, "unsigned answer: only an answer signed by a registered approver "
                           "key counts (`guardctl approvals sign`)")
    kinds = {"type": str, "request": str, "digest": str, "approved": bool, "reason": str,
             "public_key": str, "signature": str}
    if (set(data) != ANSWER_FIELDS or data["type"] != ANSWER_TYPE
            or any(not isinstance(data[k], kind) for k, kind in kinds.items())
            or not (data["window_minutes"] is None
                    or type(data["window_minutes"]) is int)):  # noqa: E721 - no bool
        raise Refused(400, f"not a {ANSWER_TYPE} answer: make one with `guardctl approvals sign`")
    return data


def _signer(state_dir: Path, data: dict[str, Any]) -> str:
    """The registered name of the key that signed `data`; Refused unless it verifies."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        keys = load_keys(keys_path(state_dir))
    except UsageError as err:
        raise Refused(500, str(err)) from None
    name = next((n for n, key in keys.items() if key == data["public_key"]), None)
    if name is None:
        raise Refused(403, "no approver key with this public key is registered "
                           "(`guardctl approvals keys add`)")
    signed = {k: v for k, v in data.items() if k != "signature"}
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(keys[name]))
        key.verify(base64.b64decode(data["signature"], validate=True), canonical(signed))
    except (InvalidSignature, ValueError, binascii.Error):
        raise Refused(403, f"the signature does not verify with key {name}") from None
    return name


def receive(state_dir: Path, request_id: str, body: bytes, now: float) -> Reply:
    """Take a signed answer to request `request_id` (see the module docstring); never
    raises: every refusal is a 4xx Reply with one line."""
    try:
        require_cryptography()
        return _receive(state_dir, request_id, body, now)
    except Refused as refusal:
        return Reply(refusal.status, str(refusal))
    except UnsafeError as err:
        return Reply(500, str(err))


def _receive(state_dir: Path, request_id: str, body: bytes, now: float) -> Reply:
    if not (request_id.isascii() and request_id.isalnum()):
        raise Refused(400, "not a request id")
    if len(body) > MAX_ANSWER_BYTES:
        raise Refused(413, "too large for an answer")
    data = _parse(body)
    name = _signer(state_dir, data)
    if data["request"] != request_id:
        raise Refused(400, f"signed for another request ({data['request'][:12]}), not this one")
    request = Queue(state_dir).load(request_id)
    if request is None:
        raise Refused(404, f"no request {request_id[:12]} is waiting (answered, timed out or "
                           "withdrawn)")
    if now > request.expires:
        raise Refused(410, f"request {request_id[:12]} expired at {iso_time(request.expires)}")
    if data["digest"] != request_digest(request):
        raise Refused(409, "signed over another request than the one waiting (its command, "
                           "cluster, namespaces or expiry differ)")
    approver = Approver(user=f"key:{name}", tty=None, at=now)
    try:
        done = answer(state_dir, request_id, approved=data["approved"], approver=approver,
                      reason=data["reason"], window_minutes=data["window_minutes"])
    except AnswerError as exc:
        text = str(exc)
        raise Refused(410 if text == GONE else 409 if text.startswith("already") else 422,
                      text) from None
    verdict = done if done.startswith("declined") else f"approved by key:{name} ({done})"
    return Reply(200, verdict)
