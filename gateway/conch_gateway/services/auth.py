"""The token endpoint: a user's password → a JWT (auth.authenticator does the checking), with the
attempts per username limited so passwords cannot be guessed at speed."""

from __future__ import annotations

from .. import errors
from ..auth.authenticator import Authenticator
from ..auth.credentials import Quota
from ..limits.quotas import Quotas
from ..protocol.auth import TokenRequest, TokenResponse

LOGIN_ATTEMPTS = Quota(requests_per_minute=10)  # per username, across every replica sharing Redis


class TokenService:
    def __init__(self, authenticator: Authenticator | None, quotas: Quotas):
        self._authenticator = authenticator
        self._quotas = quotas

    async def token(self, request: TokenRequest) -> TokenResponse:
        if self._authenticator is None:
            # 404: the route is off here, and no retry will change that (503 would invite one)
            raise errors.ConchError(404, "AUTH_DISABLED", "authentication is off on this gateway: requests need no "
                                    "token (CONCH_AUTH, docs/auth.md)")
        lease = await self._quotas.admit(f"login:{request.username}", LOGIN_ATTEMPTS)
        self._quotas.settle(lease, 0)
        token, ttl = await self._authenticator.login(request.username, request.password)
        return TokenResponse(access_token=token, expires_in=ttl)
