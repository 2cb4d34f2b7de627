"""Health of an `external` Model's Triton: the server and the named model must both report ready."""

from __future__ import annotations

import urllib.error
import urllib.request
from urllib.parse import quote


def probe(url: str, triton_model: str, timeout: float) -> tuple[bool, str]:
    base = url.rstrip("/")
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
    with urllib.request.urlopen(url, timeout=timeout) as response:
        response.read()


def _describe(exc: OSError) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    reason = getattr(exc, "reason", None)
    return str(reason or exc)
