"""A presented credential → the `Caller`, or the 401 the client gets.

Three kinds, told apart by shape: an API key (`ck-…`), a JWT Conch issued (`iss` = the gateway's
issuer), anything else is offered to the cluster as a ServiceAccount token (TokenReview) when that
is enabled. Users log in here too (`login`), for the token endpoint.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import datetime, timezone
from typing import Callable, Protocol

from .. import errors
from . import keys, passwords, tokens
from .caller import AccessReviewer, Caller, ClusterUser
from .credentials import Credentials, Policy, Quota

log = logging.getLogger("conch.gateway.auth")


class TokenReviewer(AccessReviewer, Protocol):
    async def authenticate(self, token: str) -> ClusterUser | None: ...


class Authenticator:
    def __init__(self, credentials: Credentials, *, issuer: str = "conch", token_ttl_s: int = 3600,
                 default_quota: Quota = Quota(), reviewer: TokenReviewer | None = None,
                 on_failure: Callable[[str], None] = lambda reason: None):
        self.credentials = credentials  # swapped whole by the credential source on every change
        self._issuer = issuer
        self._ttl_s = token_ttl_s
        self._default_quota = default_quota
        self._reviewer = reviewer
        self._on_failure = on_failure

    async def authenticate(self, presented: str) -> Caller:
        key = keys.parse(presented)
        if key is not None:
            return self._api_key(*key)
        if presented.count(".") == 2:
            issuer = tokens.issuer_of(presented)
            if issuer == self._issuer:
                return self._user_token(presented)
            if self._reviewer is not None:
                return await self._service_account(presented)
        raise self._refuse("malformed", "the credential is neither a Conch API key nor a token this gateway accepts")

    async def login(self, username: str, password: str) -> tuple[str, int]:
        """(access token, seconds it lives) for a user's password, or 401."""
        user = self.credentials.users.get(username)
        ok = await asyncio.to_thread(passwords.verify, user.password_hash if user else None, password)
        if not ok or user is None:
            raise self._refuse("bad_password", "unknown username or wrong password")
        if user.policy.expired(_now()):
            raise self._refuse("expired", f"user '{username}' has expired")
        signer = self.credentials.signer
        if signer is None:
            raise errors.service_not_configured("TOKENS_NOT_CONFIGURED", "this gateway has no signing key to issue "
                                                "tokens with; API keys still work (docs/auth.md)")
        return tokens.issue(username, signer, issuer=self._issuer, ttl_s=self._ttl_s), self._ttl_s

    def _api_key(self, key_id: str, secret: str) -> Caller:
        record = self.credentials.keys.get(key_id)
        if record is None or not keys.matches(secret, record.sha256):
            raise self._refuse("unknown_key", "invalid API key (unknown or revoked)")
        if record.policy.expired(_now()):
            raise self._refuse("expired", f"API key '{record.name}' expired at {record.policy.expires.isoformat()}")
        return Caller(f"key:{record.name}", self._with_default_quota(record.policy))

    def _user_token(self, token: str) -> Caller:
        try:
            username = tokens.verify(token, self.credentials, issuer=self._issuer)
        except tokens.TokenInvalid as exc:
            raise self._refuse("bad_token", str(exc)) from None
        user = self.credentials.users.get(username)
        if user is None:  # deleting the user revokes their tokens at once
            raise self._refuse("unknown_user", f"user '{username}' no longer exists")
        if user.policy.expired(_now()):
            raise self._refuse("expired", f"user '{username}' has expired")
        return Caller(f"user:{username}", self._with_default_quota(user.policy))

    async def _service_account(self, token: str) -> Caller:
        user = await self._reviewer.authenticate(token)
        if user is None:
            raise self._refuse("bad_token", "the token was not accepted: not a valid ServiceAccount token for this "
                                            "gateway's audience, expired, or its pod is gone")
        # Which models: the cluster's RBAC decides per Model (verb invoke), not a policy of ours.
        return Caller(user.username, Policy(role="user", models=(), quota=self._default_quota),
                      cluster_user=user, reviewer=self._reviewer)

    def _with_default_quota(self, policy: Policy) -> Policy:
        return replace(policy, quota=policy.quota.or_default(self._default_quota))

    def _refuse(self, reason: str, message: str) -> errors.ConchError:
        self._on_failure(reason)
        return errors.authentication_failed(message)


def _now() -> datetime:
    return datetime.now(timezone.utc)
