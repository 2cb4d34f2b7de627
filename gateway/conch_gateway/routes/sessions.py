"""Seed 002's chat service: `POST /chat`, `POST /reset`, `GET /status`; the session is the
`X-Session-Id` header or the body's `session_id` (else the caller's default session)."""

from __future__ import annotations

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response

from ..dependencies import services
from ..protocol.sessions import SESSION_ID, ChatRequest, ChatResponse, ResetResponse, StatusResponse
from ..responses import typed_json
from ..services.sessions import SessionService
from ..sse import event_stream

router = APIRouter(tags=["sessions"])
SessionHeader = Header(None, alias="X-Session-Id", min_length=1, max_length=128, pattern=SESSION_ID)


def _sessions(request: Request) -> SessionService:
    return services(request).sessions


@router.post("/chat", response_model=ChatResponse, summary="Chat in a session")
async def chat(body: ChatRequest, request: Request, x_session_id: str | None = SessionHeader) -> Response:
    session = body.session_id or x_session_id
    if body.stream:
        return event_stream(await _sessions(request).stream(body, session))
    return typed_json(await _sessions(request).chat(body, session))


@router.post("/reset", response_model=ResetResponse, summary="Forget a session's conversation")
async def reset(request: Request, x_session_id: str | None = SessionHeader) -> Response:
    return typed_json(await _sessions(request).reset(x_session_id))


@router.get("/status", response_model=StatusResponse, summary="The session's model and length")
async def status(request: Request, x_session_id: str | None = SessionHeader) -> Response:
    return typed_json(await _sessions(request).status(x_session_id))
