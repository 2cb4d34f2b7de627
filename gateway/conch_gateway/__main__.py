"""`python -m conch_gateway`: serve the gateway with settings from the environment."""

from __future__ import annotations

import argparse
import gc
import logging
import sys

import uvicorn
from pydantic import ValidationError

from .app import create_app
from .limits.connections import with_header_timeout
from .settings import Settings


def _settings_help() -> str:
    """Every setting as its environment variable, from the Settings model itself (so --help never
    drifts from what is read)."""
    prefix = Settings.model_config.get("env_prefix", "")
    lines = ["settings (environment variables):"]
    for name, field in Settings.model_fields.items():
        aliases = getattr(field.validation_alias, "choices", None)
        env = " / ".join(aliases) if aliases else f"{prefix}{name}".upper()
        default = "" if field.default is None else f" (default: {field.default})"
        lines.append(f"  {env}\n      {field.description or ''}{default}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m conch_gateway", description=__doc__, epilog=_settings_help(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    try:
        settings = Settings()
        logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        app = create_app(settings)
    except (ValidationError, ValueError) as exc:
        # a bad or missing setting is a configuration mistake, not a crash: one readable message, no traceback
        sys.exit(f"conch-gateway: {exc}")
    tune_garbage_collector(settings.gc_threshold)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=with_header_timeout(settings.header_timeout_s),  # uvicorn's httptools protocol, plus a deadline for headers
        limit_concurrency=settings.max_connections,  # connections + requests in flight; 503 beyond
        access_log=settings.access_log,
        log_level=settings.log_level,
        timeout_graceful_shutdown=settings.shutdown_grace_s,
    )


def tune_garbage_collector(threshold: int) -> None:
    """Process-wide, so set here, where the process is the gateway, not in create_app (tests build
    many apps in one process). The older generations keep Python's ratios."""
    if threshold == 0:
        gc.disable()
        return
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(threshold, older, oldest)


if __name__ == "__main__":
    main()
