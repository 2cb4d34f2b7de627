"""Credentials for the auth tests, made the way an operator of Conch makes them
(`python -m conch_gateway.auth`'s functions): keys files for the local source, Secrets for the
Kubernetes one."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path
from typing import Any

import yaml

from conch_gateway.auth import keys, passwords


def key_entry(name: str, **policy: Any) -> tuple[str, dict[str, Any]]:
    """(the key, its entry in a keys file: hash and policy only)."""
    new = keys.generate()
    return new.key, {"name": name, "id": new.id, "sha256": new.sha256, **policy}


def user_entry(username: str, password: str, **policy: Any) -> dict[str, Any]:
    return {"username": username, "passwordHash": passwords.hash_password(password), **policy}


def signing_entry(kid: str) -> dict[str, Any]:
    return {"kid": kid, "key": base64.b64encode(secrets.token_bytes(32)).decode()}


def write_keys(path: Path, api_keys=(), users=(), signing=()) -> Path:
    path.write_text(yaml.safe_dump({"apiKeys": list(api_keys), "users": list(users), "signingKeys": list(signing)}))
    return path


def key_secret(name: str, annotations: dict[str, str] | None = None) -> tuple[str, dict[str, Any]]:
    """(the key, a Secret holding its hash) — what `python -m conch_gateway.auth key` prints."""
    new = keys.generate()
    meta: dict[str, Any] = {"name": name, "labels": {"conch.dev/credential": "api-key"}}
    if annotations:
        meta["annotations"] = annotations
    return new.key, {"apiVersion": "v1", "kind": "Secret", "metadata": meta,
                     "stringData": {"id": new.id, "sha256": new.sha256}}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
