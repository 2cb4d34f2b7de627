"""Health of an `external` Model's Triton: the server and the named model must both report ready.

The URL is a Model author's input, so the probe only goes where the admin's allowlist lets it
(`CONCH_OPERATOR_EXTERNAL_URL_ALLOWLIST`, the rule of conch_api.external, which the gateway applies
too) and never follows a redirect: a Triton answers its health routes itself, and a redirect is how
a probe would be steered at an address the allowlist does not cover.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from urllib.parse import quote

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from conch_api.external import url_allowed


class ExternalPolicy(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONCH_OPERATOR_", extra="ignore")

    external_url_allowlist: list[str] = Field([], description="URL patterns external Models may use (fnmatch on "
                                              "scheme://host:port); empty allows any host but link-local ones.")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise urllib.error.HTTPError(req.full_url, code, f"redirect to elsewhere refused ({code})", headers, fp)


_OPENER = urllib.request.build_opener(_NoRedirects)


def probe(url: str, triton_model: str, timeout: float, allowlist: list[str] | None = None) -> tuple[bool, str]:
    base = url.rstrip("/")
    allowed = ExternalPolicy().external_url_allowlist if allowlist is None else allowlist
    if not url_allowed(base, allowed):
        return False, "the URL is not allowed by the operator's external URL allowlist; not probed"
    try:
        _get(f"{base}/v2/health/ready", timeout)
    except OSError as exc:
        return False, f"Triton at {base} is not ready: {_describe(exc)}"
    try:
        _get(f"{base}/v2/models/{quote(triton_model, safe='')}/ready", timeout)
    except OSError as exc:
        return False, f"Triton at {base} does not serve model '{triton_model}': {_describe(exc)}"
    return True, f"Triton at {base} serves '{triton_model}'"


def _get(url: str, timeout: float) -> None:
    with _OPENER.open(url, timeout=timeout) as response:
        response.read()


def _describe(exc: OSError) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}" + (" (redirects are not followed)" if 300 <= exc.code < 400 else "")
    reason = getattr(exc, "reason", None)
    return str(reason or exc)
