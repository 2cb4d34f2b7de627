"""Credentials without a cluster (`make up`): a YAML file, re-read when it changes, and an admin key
given in the environment. Only hashes are kept, even of the environment's key."""

from __future__ import annotations

import asyncio
import logging
import secrets
from pathlib import Path
from typing import Callable

import yaml

from . import keys
from .credentials import ApiKey, CredentialError, Credentials, Policy, SigningKey, from_file

log = logging.getLogger("conch.gateway.auth")


def admin_key_from_env(value: str | None) -> list[ApiKey]:
    if not value:
        return []
    parsed = keys.parse(value.strip())
    if parsed is None:
        raise CredentialError("CONCH_AUTH_ADMIN_KEY must be a key made by `python -m conch_gateway.auth key` "
                              "(ck-<12 hex>-<64 hex>)")
    key_id, secret = parsed
    return [ApiKey(name="admin", id=key_id, sha256=keys.digest(secret), policy=Policy(role="admin"))]


def read_file(path: Path | None) -> Credentials:
    if path is None:
        return Credentials()
    merged: dict[str, list] = {"apiKeys": [], "users": [], "signingKeys": []}
    for document in yaml.safe_load_all(path.read_text()):  # `--format file >> keys.yaml` appends documents
        if document is None:
            continue
        if not isinstance(document, dict):
            raise CredentialError(f"{path}: expected mappings with apiKeys, users and signingKeys")
        for section in merged:
            merged[section].extend(document.get(section) or [])
    return from_file(merged)


def ephemeral_signing_key() -> SigningKey:
    """For a lone local gateway with no signing key configured: tokens it issues die with it."""
    log.warning("no JWT signing key configured: using a random one for this process (tokens stop working when it "
                "restarts and are not accepted by other replicas)")
    return SigningKey(kid="ephemeral", secret=secrets.token_bytes(32), created="ephemeral")


class FileCredentialSource:
    """Loads the file at start and again whenever its modification time changes."""

    def __init__(self, path: Path | None, publish: Callable[[Credentials], None],
                 extend: Callable[[Credentials], Credentials], poll_s: float = 0.5):
        self._path = path
        self._publish = publish
        self._extend = extend
        self._poll_s = poll_s
        self._stamp: float | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._publish(self._extend(read_file(self._path)))  # a broken file stops the start: fix it first
        self._stamp = self._mtime()
        if self._path is not None:
            self._task = asyncio.create_task(self._poll_forever(), name="credential-file")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _mtime(self) -> float | None:
        try:
            return self._path.stat().st_mtime if self._path else None
        except OSError:
            return None

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            stamp = self._mtime()
            if stamp == self._stamp:
                continue
            self._stamp = stamp
            try:
                self._publish(self._extend(read_file(self._path)))
                log.info("credentials reloaded from %s", self._path)
            except (OSError, CredentialError, yaml.YAMLError) as exc:
                log.warning("keeping the previous credentials: %s cannot be used: %s", self._path, exc)
