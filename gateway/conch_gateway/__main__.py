"""`python -m conch_gateway`: serve the gateway with settings from the environment."""

from __future__ import annotations

import logging

import uvicorn

from .app import create_app
from .limits.connections import with_header_timeout
from .settings import Settings


def main() -> None:
    settings = Settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=with_header_timeout(settings.header_timeout_s),  # uvicorn's httptools protocol, plus a deadline for headers
        limit_concurrency=settings.max_connections,  # connections + requests in flight; 503 beyond
        access_log=settings.access_log,
        log_level=settings.log_level,
        timeout_graceful_shutdown=settings.shutdown_grace_s,
    )


if __name__ == "__main__":
    main()
