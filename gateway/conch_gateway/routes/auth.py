"""`POST /api/auth/token`: a bearer token for a user's name and password."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..dependencies import services
from ..protocol.auth import TokenRequest, TokenResponse
from ..responses import typed_json

router = APIRouter(prefix="/api/auth", tags=["auth"])


@router.post("/token", response_model=TokenResponse,
             summary="A bearer token (JWT) for a user's name and password; send it as Authorization: Bearer")
async def token(body: TokenRequest, request: Request) -> Response:
    return typed_json(await services(request).auth.token(body))
