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
# the audience of a token that names none: the API server itself
API_AUDIENCE = "https://kubernetes.default.svc"
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
    audiences: tuple[str, ...] = (API_AUDIENCE,)


class TokenTable:
    """Who a bearer token belongs to, and until when."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.admin_token = secrets.token_urlsafe(32)
        self._grants: dict[str, Grant] = {self.admin_token: Grant(ADMIN_USER, None)}

    def issue(self, user: str, seconds: float,
              audiences: tuple[str, ...] = (API_AUDIENCE,)) -> tuple[str, float]:
        """A new JWT-shaped token for `user` valid `seconds` from now (negative: already
        expired, for tests) for `audiences`; returns the token and its expiry (epoch
        seconds)."""
        now = self._clock()
        expires = now + seconds
        header = {"alg": "RS256", "kid": "guardctl-devserver"}
        claims = {"iss": "https://kubernetes.default.svc", "sub": user,
                  "aud": list(audiences), "iat": int(now), "exp": int(expires)}
        token = ".".join([_b64url(json.dumps(header).encode()),
                          _b64url(json.dumps(claims).encode()),
                          _b64url(secrets.token_bytes(64))])
        with self._lock:
            if len(self._grants) >= MAX_TOKENS:
                oldest = next(t for t in self._grants if t != self.admin_token)
                del self._grants[oldest]
            self._grants[token] = Grant(user, expires, audiences)
        return token, expires

    def all_tokens(self) -> list[str]:
        """Every token still known (the admin's and the issued ones): what tests look for
        in places an agent could read."""
        with self._lock:
            return list(self._grants)

    def user_for(self, authorization: str | None) -> str | None:
        """The user an `Authorization` header authenticates, or None (unknown or expired,
        or a token for another audience than the API server)."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        found = self.review(authorization[len("Bearer "):].strip(), (API_AUDIENCE,))
        return found[0] if found else None

    def review(self, token: str, audiences: tuple[str, ...]) -> tuple[str, tuple[str, ...]] | None:
        """A TokenReview: the user `token` authenticates and the audiences it has of those
        asked for (the API server's when none are); None when unknown, expired, or for none
        of them."""
        with self._lock:
            grant = self._grants.get(token)
        if grant is None or (grant.expires is not None and grant.expires <= self._clock()):
            return None
        matched = tuple(a for a in audiences or (API_AUDIENCE,) if a in grant.audiences)
        return (grant.user, matched) if matched else None
