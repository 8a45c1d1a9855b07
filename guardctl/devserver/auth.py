"""Bearer tokens: the admin token and the TokenRequest tokens the server issued.

Tokens are JWT-shaped (`eyJ...`) like real service-account tokens, so masking tests see
realistic values, but their signature is random: only this server's table makes them valid.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass

ADMIN_USER = "admin"
# Upper bound on issued tokens kept in memory; the oldest are forgotten first.
MAX_TOKENS = 10_000


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def service_account_user(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


@dataclass(frozen=True)
class Grant:
    user: str
    expires: float | None  # epoch seconds; None never expires (the admin token)


class TokenTable:
    """Who a bearer token belongs to, and until when."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.admin_token = secrets.token_urlsafe(32)
        self._grants: dict[str, Grant] = {self.admin_token: Grant(ADMIN_USER, None)}

    def issue(self, user: str, seconds: float) -> tuple[str, float]:
        """A new JWT-shaped token for `user` valid `seconds` from now (negative: already
        expired, for tests); returns the token and its expiry (epoch seconds)."""
        now = self._clock()
        expires = now + seconds
        header = {"alg": "RS256", "kid": "guardctl-devserver"}
        claims = {"iss": "https://kubernetes.default.svc", "sub": user,
                  "aud": ["https://kubernetes.default.svc"], "iat": int(now), "exp": int(expires)}
        token = ".".join([_b64url(json.dumps(header).encode()),
                          _b64url(json.dumps(claims).encode()),
                          _b64url(secrets.token_bytes(64))])
        with self._lock:
            if len(self._grants) >= MAX_TOKENS:
                oldest = next(t for t in self._grants if t != self.admin_token)
                del self._grants[oldest]
            self._grants[token] = Grant(user, expires)
        return token, expires

    def all_tokens(self) -> list[str]:
        """Every token still known (the admin's and the issued ones): what tests look for
        in places an agent could read."""
        with self._lock:
            return list(self._grants)

    def user_for(self, authorization: str | None) -> str | None:
        """The user an `Authorization` header authenticates, or None (unknown or expired)."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        with self._lock:
            grant = self._grants.get(authorization[len("Bearer "):].strip())
        if grant is None or (grant.expires is not None and grant.expires <= self._clock()):
            return None
        return grant.user
