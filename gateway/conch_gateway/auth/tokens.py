"""The JWTs of `POST /api/auth/token`: HS256, signed with the newest signing key, verified with
whichever key its `kid` names — so a new key can be added, used for new tokens, and the old one
removed once its last token has expired (rotation without downtime)."""

from __future__ import annotations

import secrets
import time

import jwt

from .credentials import Credentials, SigningKey

AUDIENCE = "conch-gateway"
ALGORITHM = "HS256"


class TokenInvalid(ValueError):
    """Why a token was refused, in words a client may read."""


def issue(username: str, key: SigningKey, *, issuer: str, ttl_s: int, now: float | None = None) -> str:
    issued = int(now if now is not None else time.time())
    claims = {"iss": issuer, "aud": AUDIENCE, "sub": username, "iat": issued, "nbf": issued,
              "exp": issued + ttl_s, "jti": secrets.token_hex(8)}
    return jwt.encode(claims, key.secret, algorithm=ALGORITHM, headers={"kid": key.kid})


def issuer_of(token: str) -> str | None:
    """The `iss` claim, read without verifying (only to tell Conch's tokens from Kubernetes')."""
    try:
        return jwt.decode(token, options={"verify_signature": False}).get("iss")
    except jwt.PyJWTError:
        return None


def verify(token: str, credentials: Credentials, *, issuer: str, leeway_s: float = 5.0) -> str:
    """The username the token was issued to, or TokenInvalid."""
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError:
        raise TokenInvalid("the token is not a well-formed JWT") from None
    key = credentials.verification_key(kid) if isinstance(kid, str) else None
    if key is None:
        raise TokenInvalid("the token was signed with a key this gateway no longer accepts; get a new token")
    try:
        claims = jwt.decode(token, key, algorithms=[ALGORITHM], audience=AUDIENCE, issuer=issuer, leeway=leeway_s,
                            options={"require": ["exp", "iat", "sub", "iss", "aud"]})
    except jwt.ExpiredSignatureError:
        raise TokenInvalid("the token has expired; get a new one from POST /api/auth/token") from None
    except jwt.PyJWTError as exc:
        raise TokenInvalid(f"the token is not valid: {exc}") from None
    return claims["sub"]
