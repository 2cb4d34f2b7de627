"""How a route reaches what it needs: `services(request)`, the app's one `Services` object, kept on
`app.state` (never in module globals).

Every route uses this one idiom. It is a plain attribute read on purpose: resolving a FastAPI
dependency per request costs more on the hot path than everything else the gateway does.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from .backends.triton import TritonClient
from .observability import Metrics
from .registry.base import ModelRegistry
from .services.api_v1 import ApiV1Service
from .services.auth import TokenService
from .services.generate import GenerateService
from .services.openai import OpenAIService
from .services.sessions import SessionService  # chat sessions (issue 17)
from .services.tei import TEIService
from .services.tgi import TGIService
from .settings import Settings


@dataclass(frozen=True, slots=True)
class Services:
    generate: GenerateService
    openai: OpenAIService
    tgi: TGIService
    tei: TEIService
    api_v1: ApiV1Service
    registry: ModelRegistry
    triton: TritonClient
    metrics: Metrics
    settings: Settings
    auth: TokenService | None = None
    sessions: SessionService | None = None  # chat sessions (issue 17, docs/sessions.md)


def services(request: Request) -> Services:
    return request.app.state.services
