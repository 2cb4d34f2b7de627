"""`POST /api/auth/token`: a user's name and password in, a bearer token out (seed 003's shape)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, StrictStr

from .types import RequestModel


class TokenRequest(RequestModel):
    username: StrictStr = Field(min_length=1, max_length=256)
    password: StrictStr = Field(min_length=1, max_length=1024)


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds the token is valid for.")
