"""API keys: `ck-<id>-<secret>`, 12 hex digits of id and 64 of secret (256 random bits).

The id finds the record; only the SHA-256 of the secret is ever stored, and it is compared in
constant time. A fast hash is right here (unlike passwords): a 256-bit random secret cannot be
guessed, so slowing the hash down would only slow down every request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

_KEY = re.compile(r"ck-([0-9a-f]{12})-([0-9a-f]{64})")


@dataclass(frozen=True, slots=True)
class NewKey:
    key: str  # shown once, to whoever made it
    id: str
    sha256: str


def generate() -> NewKey:
    key_id, secret = secrets.token_hex(6), secrets.token_hex(32)
    return NewKey(key=f"ck-{key_id}-{secret}", id=key_id, sha256=digest(secret))


def parse(presented: str) -> tuple[str, str] | None:
    """(id, secret) of something shaped like a key, else None."""
    match = _KEY.fullmatch(presented)
    return (match.group(1), match.group(2)) if match else None


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def matches(secret: str, expected_sha256: str) -> bool:
    return hmac.compare_digest(digest(secret), expected_sha256.lower())
