"""Posting a queued request to a webhook, signed as the Standard Webhooks spec says.

Configured in the config file of the account that holds the queue (with a broker, the
broker's):

    approvals:
      webhook:
        url: https://hooks.example.com/guardctl     # http:// or https://
        secret_file: /etc/guardctl/webhook.secret   # `whsec_` and base64 of the key
        format: standard                            # or slack, teams

When a request is queued, a background thread posts it once (`announce`): the command never
waits for it, and a post that fails (unreachable, an HTTP error, a bad setting, an unreadable
secret) is one line, on the broker's log in a broker, else on stderr. The request waits as it
would without a webhook, and `guardctl approvals` answers it as ever; the webhook only tells
people. An answer from off the machine must be signed (`signed`): a chat button that merely
calls a URL is not an answer.

Every format carries the Standard Webhooks headers: `webhook-id` (`msg_` and the request id),
`webhook-timestamp` (seconds) and `webhook-signature` (`v1,` and the base64 HMAC-SHA256,
keyed with the secret's decoded bytes, of `ID.TIMESTAMP.BODY`). `standard` posts
`{"type": "approval.requested", "timestamp": …, "data": signed.shown(request)}`; `slack` an
incoming-webhook message (text and blocks) and `teams` a message with an Adaptive Card, both
made of the same masked fields, and naming the request id and digest to sign.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

from guardctl.approvals.queue import Request
from guardctl.config import load_approvals
from guardctl.env import Environment
from guardctl.errors import UsageError
from guardctl.recording.audit import iso_time

FORMATS = ("standard", "slack", "teams")
EVENT = "approval.requested"
# how long one post may take; the thread ends then, the request waits on
POST_SECONDS = 10.0
SECRET_PREFIX = "whsec_"
# Slack refuses a section's text over 3000 characters, a header over 150
SLACK_TEXT = 2900
FAILED_TAIL = "the request waits for `guardctl approvals` here"


class Settings(NamedTuple):
    url: str
    secret_file: Path
    format: str


def settings(env: Environment) -> Settings | None:
    """The webhook the config file names; None without one; UsageError for a bad setting."""
    raw = load_approvals(env.config_path, env.cache_dir)
    if raw is None:
        return None
    where = f"{env.config_path}: approvals"
    if not isinstance(raw, dict) or set(raw) - {"webhook"}:
        raise UsageError(f"{where}: expected `webhook: {{url: …, secret_file: …}}`")
    hook = raw.get("webhook")
    if not isinstance(hook, dict) or set(hook) - {"url", "secret_file", "format"}:
        raise UsageError(f"{where}.webhook: expected url, secret_file and format")
    url, secret, fmt = hook.get("url"), hook.get("secret_file"), hook.get("format", "standard")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise UsageError(f"{where}.webhook.url must be an http:// or https:// address")
    if not isinstance(secret, str) or not secret.startswith("/"):
        raise UsageError(f"{where}.webhook.secret_file must be an absolute path")
    if fmt not in FORMATS:
        raise UsageError(f"{where}.webhook.format must be one of {', '.join(FORMATS)}")
    return Settings(url, Path(secret), str(fmt))


def announce(env: Environment, request: Request) -> threading.Thread | None:
    """Post `request` to the configured webhook from a background thread (None: none set)."""
    try:
        chosen = settings(env)
    except UsageError as err:
        _failed(env, f"is not set up right: {err}")
        return None
    if chosen is None:
        return None
    thread = threading.Thread(target=_deliver, args=(env, chosen, request, time.time()),
                              daemon=True)
    thread.start()
    return thread


def _deliver(env: Environment, chosen: Settings, request: Request, now: float) -> None:
    import urllib.error
    import urllib.parse

    host = urllib.parse.urlsplit(chosen.url).hostname or "?"  # never the URL: it may be a secret
    try:
        secret = read_secret(chosen.secret_file)
        body = json.dumps(message(request, now, chosen.format), ensure_ascii=False).encode()
        _post(chosen.url, body, signature_headers(secret, f"msg_{request.id}", int(now), body))
    except UsageError as err:
        _failed(env, f"was not sent: {err}")
    except urllib.error.HTTPError as err:
        _failed(env, f"got HTTP {err.code} from {host}")
    except (urllib.error.URLError, OSError, ValueError) as err:
        _failed(env, f"could not reach {host}: {getattr(err, 'reason', err)}")
    except Exception as err:  # noqa: BLE001 - a thread's traceback would break the agent's stderr
        _failed(env, f"failed with {host}: {type(err).__name__}: {err}")


def _failed(env: Environment, what: str) -> None:
    """One line: on the broker's log in a broker's worker (the agent's stderr is not the place
    for it), else on stderr."""
    line = f"the approval webhook {what}; {FAILED_TAIL}"
    journal = env.caller.journal if env.caller is not None else None
    if journal is not None:
        journal(line)
        return
    env.stderr.write(f"guardctl: {line}\n")
    env.stderr.flush()


def _post(url: str, body: bytes, headers: dict[str, str]) -> None:
    import urllib.request

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        # a redirect would be followed as a GET without the body: report it instead
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "guardctl", **headers})
    with urllib.request.build_opener(_NoRedirect).open(request, timeout=POST_SECONDS):
        pass


# --------------------------------------------------------------------------- signing


def read_secret(path: Path) -> bytes:
    """The key in a `whsec_<base64>` secret file; UsageError names what is wrong."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot read its secret_file {path}: "
                         f"{getattr(err, 'strerror', None) or err}") from None
    try:
        key = base64.b64decode(text.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not key:
        raise UsageError(f"its secret_file {path} does not hold a whsec_<base64> secret")
    return key


def signature_headers(secret: bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers for `body`."""
    mac = hmac.new(secret, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }


# --------------------------------------------------------------------------- payloads


def standard_payload(request: Request, now: float) -> dict[str, Any]:
    from guardctl.approvals.signed import shown

    return {"type": EVENT, "timestamp": iso_time(now), "data": shown(request, now)}


def message(request: Request, now: float, fmt: str) -> dict[str, Any]:
    """The body posted for `request` in format `fmt`."""
    payload = standard_payload(request, now)
    if fmt == "slack":
        return slack_message(payload["data"])
    if fmt == "teams":
        return teams_message(payload["data"])
    return payload


def _facts(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(title, text) of what a human reads in a chat message, all of it masked."""
    rules = "; ".join(f"{r['id']}: {r['reason']}" for r in data["rules"]) or "not understood"
    namespaces = ", ".join(n or "(context default)" for n in data["namespaces"]) or "-"
    facts = [
        ("Read as", "\n".join(data["readings"])),
        ("Rules", rules),
        ("Context", data["context"] or "-"),
        ("Cluster", data["cluster"] or "-"),
        ("Namespaces", namespaces),
        ("Risks", "; ".join(data["risks"]) or "none"),
        ("Problems", "; ".join(data["problems"]) or "none"),
        ("Asked by", data["requester"] or "the broker's own account"),
        ("Expires", data["expires"]),
        ("Request", data["id"]),
        ("Digest", data["digest"]),
    ]
    return facts


def _shown_change(data: dict[str, Any]) -> tuple[str, str] | None:
    if data.get("manifest") is not None:
        return "Manifest", str(data["manifest"])
    if data.get("diff") is not None:
        return "kubectl diff", str(data["diff"])
    return None


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 20] + "\n… (cut)"


def _slack(text: str) -> str:
    """Slack's mrkdwn escapes: &, < and > only."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


HOW_TO_ANSWER = ("answer with `guardctl approvals sign --request PAYLOAD --key KEY "
                 "--approve|--deny` (a click alone does not count)")


def slack_message(data: dict[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook message: a header, the command, the facts, the change."""
    line = _slack(data["line"])
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": "guardctl: approval needed"}},
        {"type": "section", "text": {"type": "mrkdwn",
                                     "text": _cut(f"*Command*\n```{line}```", SLACK_TEXT)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _cut("\n".join(
            f"*{title}:* {_slack(text)}" for title, text in _facts(data)), SLACK_TEXT)}},
    ]
    change = _shown_change(data)
    if change is not None:
        text = f"*{change[0]}*\n```{_slack(change[1])}```"
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                   "text": _cut(text, SLACK_TEXT)}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn",
                                                    "text": _slack(HOW_TO_ANSWER)}]})
    summary = f"guardctl: approval needed for {line} (request {data['id']})"
    return {"text": _cut(summary, SLACK_TEXT), "blocks": blocks}


def teams_message(data: dict[str, Any]) -> dict[str, Any]:
    """A Teams message (incoming webhook or Workflows) holding an Adaptive Card."""
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": "guardctl: approval needed", "weight": "Bolder",
         "size": "Medium", "wrap": True},
        {"type": "TextBlock", "text": data["line"], "fontType": "Monospace", "wrap": True},
        {"type": "FactSet", "facts": [{"title": t, "value": v} for t, v in _facts(data)]},
    ]
    change = _shown_change(data)
    if change is not None:
        body.append({"type": "TextBlock", "text": change[0], "weight": "Bolder", "wrap": True})
        body.append({"type": "TextBlock", "text": change[1], "fontType": "Monospace",
                     "wrap": True})
    body.append({"type": "TextBlock", "text": HOW_TO_ANSWER, "isSubtle": True, "wrap": True})
    card = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard", "version": "1.4", "body": body}
    return {"type": "message", "attachments": [
        {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
         "content": card}]}
