"""The pure-ASGI middleware that authenticates every request (Starlette's BaseHTTPMiddleware costs
throughput): it reads `Authorization: Bearer <credential>` (or `X-API-Key` / `api-key`), turns
it into the request's `Caller`, and answers 401/403 in the one error envelope itself.

Open without a credential: probes and scrapers (`/health`, `/ping`, `GET /`, `/metrics`), the API
documents, and `POST /api/auth/token` (it checks a password instead). `GET /v1/models` without a
credential answers an empty list — the caller may use nothing — so a readiness probe still sees
the gateway serving. Admin-only: `/health/full` (it probes every backend on demand).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from .. import errors
from . import caller as callers
from .authenticator import Authenticator

OPEN = frozenset({
    ("GET", "/health"), ("GET", "/ping"), ("GET", "/"), ("GET", "/metrics"),
    ("GET", "/api/v1/health"), ("GET", "/api/v1/metrics"),
    ("GET", "/docs"), ("GET", "/docs/oauth2-redirect"), ("GET", "/redoc"), ("GET", "/openapi.json"),
    ("GET", "/api-doc/openapi.json"), ("POST", "/api/auth/token"),
})
ADMIN_ONLY = frozenset({("GET", "/health/full"), ("PUT", "/api/config"), ("POST", "/api/config/alerts")})
LISTS_FOR_ANYONE = frozenset({("GET", "/v1/models")})

_HEADERS = (b"authorization", b"x-api-key", b"api-key")


def is_open(method: str, path: str) -> bool:
    method = "GET" if method == "HEAD" else method
    # the docs pages' own scripts and stylesheets: public files, like the pages that load them
    return (method, path) in OPEN or (method == "GET" and path.startswith("/docs/static/"))


class AuthMiddleware:
    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        self.app = app
        self.authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS" or is_open(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        route = (scope["method"], scope["path"])
        presented = credential(scope)
        try:
            if presented is None:
                if route in LISTS_FOR_ANYONE:
                    caller = callers.NOBODY
                else:
                    raise errors.authentication_failed(
                        "no credential: send 'Authorization: Bearer <API key or token>' (docs/auth.md)")
            else:
                caller = await self.authenticator.authenticate(presented)
            if route in ADMIN_ONLY and not caller.is_admin:
                raise errors.authorization_failed(f"'{caller.principal}' is not an admin: "
                                                  f"{scope['method']} {scope['path']} needs the admin role")
        except errors.ConchError as exc:
            await errors.error_response(exc, scope["path"])(scope, receive, send)
            return
        token = callers.use(caller)
        try:
            await self.app(scope, receive, send)
        finally:
            callers.reset(token)


def credential(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name in _HEADERS:
            text = value.decode("latin-1").strip()
            if name == b"authorization":
                scheme, _, rest = text.partition(" ")
                text = rest.strip() if scheme.lower() == "bearer" else ""
            return text or None
    return None
