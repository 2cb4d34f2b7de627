"""Which URLs an `external` Model may point at — one rule for the operator, which probes the URL,
and the gateway, which sends prompts to it.

An admin sets an allowlist of URL patterns (fnmatch, matched against `scheme://host:port` in lower
case, e.g. `http://triton.infra:8000`, `https://*.models.example.com:*`). Without one, any host is
allowed except link-local addresses (169.254.0.0/16, fe80::/10: cloud metadata endpoints), which
only an explicit pattern can open.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from urllib.parse import urlsplit


def normalized(url: str) -> str | None:
    """`scheme://host:port` of a URL (gRPC addresses as `grpc://host:port`), or None if it has no host."""
    parts = urlsplit(url if "://" in url else f"grpc://{url}")
    if not parts.hostname:
        return None
    try:
        port = parts.port or {"https": 443, "http": 80}.get(parts.scheme, 0)
    except ValueError:
        return None
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme.lower()}://{host}:{port}"


def url_allowed(url: str, allowlist: list[str] | tuple[str, ...]) -> bool:
    target = normalized(url)
    if target is None:
        return False
    if allowlist:
        return any(fnmatch.fnmatchcase(target, pattern.lower().rstrip("/")) for pattern in allowlist)
    host = urlsplit(target).hostname or ""
    try:
        return not ipaddress.ip_address(host).is_link_local
    except ValueError:
        return True  # a name: the allowlist is how an admin narrows names
