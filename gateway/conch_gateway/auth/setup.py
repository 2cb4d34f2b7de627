"""Authentication as the settings ask for it: on or off, which credential source, and whether the
cluster reviews ServiceAccount tokens. The app starts and stops what this returns."""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from ..settings import Settings
from .authenticator import Authenticator
from .credentials import Credentials, Quota
from .local import FileCredentialSource, admin_key_from_env, ephemeral_signing_key

log = logging.getLogger("conch.gateway.auth")


def enabled(settings: Settings) -> bool:
    if settings.auth != "auto":
        return settings.auth == "on"
    return not loopback_only(settings.host)


def loopback_only(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_quota(settings: Settings) -> Quota:
    return Quota(settings.default_requests_per_minute, settings.default_tokens_per_minute,
                 settings.default_max_parallel)


@dataclass
class Auth:
    """What the app runs for authentication; `authenticator` is None when it is off."""

    authenticator: Authenticator | None
    _parts: list[Any] = field(default_factory=list)

    async def start(self) -> None:
        for part in self._parts:
            await part.start()

    async def stop(self) -> None:
        for part in reversed(self._parts):
            await part.stop()


def from_settings(settings: Settings, registry: CollectorRegistry) -> Auth:
    if not enabled(settings):
        log.warning("authentication is OFF: anyone who reaches %s:%d may use every model (set CONCH_AUTH=on to "
                    "require keys; it is on by default whenever the gateway listens beyond loopback)",
                    settings.host, settings.port)
        return Auth(None)
    failures = Counter("conch_auth_failures_total", "Requests refused 401, by reason.", ["reason"], registry=registry)
    source_kind = settings.auth_source if settings.auth_source != "auto" else settings.model_source
    admin_keys = admin_key_from_env(settings.auth_admin_key.get_secret_value() if settings.auth_admin_key else None)
    reviewer = None
    parts: list[Any] = []
    if source_kind == "kubernetes" and settings.auth_service_accounts:
        from .kubernetes import ClusterReviewer

        reviewer = ClusterReviewer(settings.auth_token_audiences, settings.auth_review_cache_s)
        parts.append(reviewer)
    authenticator = Authenticator(Credentials(), token_ttl_s=settings.auth_token_ttl_s,
                                  default_quota=default_quota(settings), reviewer=reviewer,
                                  on_failure=lambda reason: failures.labels(reason).inc())

    def publish(credentials: Credentials) -> None:
        authenticator.credentials = credentials

    if source_kind == "kubernetes":
        from .kubernetes import SecretCredentialSource, own_namespace

        namespace = own_namespace(settings.auth_namespace)
        parts.insert(0, SecretCredentialSource(namespace, publish, extend=lambda c: c.with_keys(admin_keys)))
        log.info("authentication is on: API keys, users and signing keys from Secrets labelled conch.dev/credential "
                 "in namespace %s%s", namespace, "; ServiceAccount tokens reviewed by the cluster" if reviewer else "")
    else:
        ephemeral = ephemeral_signing_key() if not _file_has_signing_keys(settings) else None

        def extend(credentials: Credentials) -> Credentials:
            credentials = credentials.with_keys(admin_keys)
            return credentials.with_signing_key(ephemeral) if ephemeral and not credentials.signing_keys else credentials

        parts.insert(0, FileCredentialSource(settings.auth_keys_file, publish, extend))
        log.info("authentication is on: credentials from %s%s", settings.auth_keys_file or "no file",
                 " and CONCH_AUTH_ADMIN_KEY" if admin_keys else "")
    return Auth(authenticator, parts)


def _file_has_signing_keys(settings: Settings) -> bool:
    from .local import read_file

    try:
        return bool(read_file(settings.auth_keys_file).signing_keys)
    except Exception:  # reported properly when the source starts
        return False
