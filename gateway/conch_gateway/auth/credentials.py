"""Credentials as data: what a key, a user or a signing key is, and the snapshot the gateway checks
requests against (pure: parsing and lookups, no I/O).

In Kubernetes every credential is a Secret in the gateway's namespace labelled
`conch.dev/credential` = `api-key` | `user` | `signing-key`; its *material* is in `data`
(`id` + `sha256` of a key, `username` + `password-hash` of a user, `key` of a signing key) and
its *policy* in annotations (`conch.dev/role`, `conch.dev/models`, `conch.dev/requests-per-minute`,
`conch.dev/tokens-per-minute`, `conch.dev/max-parallel`, `conch.dev/expires`), so
`kubectl annotate` changes what a key may do. The local file uses the same fields by their short
names (`role`, `models`, `requestsPerMinute`, …).
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone
from typing import Any, Iterable, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

LABEL = "conch.dev/credential"
KINDS = ("api-key", "user", "signing-key")
Role = Literal["admin", "user"]


@dataclass(frozen=True, slots=True)
class Quota:
    """Per-caller limits; None means no limit of that kind."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    max_parallel: int | None = None

    @property
    def unlimited(self) -> bool:
        return self.requests_per_minute is None and self.tokens_per_minute is None and self.max_parallel is None

    def or_default(self, default: "Quota") -> "Quota":
        return Quota(self.requests_per_minute if self.requests_per_minute is not None else default.requests_per_minute,
                     self.tokens_per_minute if self.tokens_per_minute is not None else default.tokens_per_minute,
                     self.max_parallel if self.max_parallel is not None else default.max_parallel)


@dataclass(frozen=True, slots=True)
class Policy:
    """What a credential may do. `models` are names or fnmatch patterns, matched against a model's
    id and its `namespace/name`; an empty tuple allows none."""

    role: Role = "user"
    models: tuple[str, ...] = ("*",)
    quota: Quota = Quota()
    expires: datetime | None = None

    def allows(self, model_id: str, qualified: str | None = None) -> bool:
        if self.role == "admin":
            return True
        names = (model_id,) if qualified is None or qualified == model_id else (model_id, qualified)
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.models for name in names)

    def expired(self, now: datetime) -> bool:
        return self.expires is not None and now >= self.expires


class PolicyFields(BaseModel):
    """A policy as written: in a Secret's annotations or an entry of the local file."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    role: Role = Field("user", validation_alias=AliasChoices("conch.dev/role", "role"))
    models: tuple[str, ...] = Field(("*",), validation_alias=AliasChoices("conch.dev/models", "models"))
    requests_per_minute: int | None = Field(None, ge=1, validation_alias=AliasChoices(
        "conch.dev/requests-per-minute", "requestsPerMinute"))
    tokens_per_minute: int | None = Field(None, ge=1, validation_alias=AliasChoices(
        "conch.dev/tokens-per-minute", "tokensPerMinute"))
    max_parallel: int | None = Field(None, ge=1, validation_alias=AliasChoices("conch.dev/max-parallel", "maxParallel"))
    expires: datetime | None = Field(None, validation_alias=AliasChoices("conch.dev/expires", "expires"))

    @field_validator("models", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):  # an annotation: "a, b  team-x/*"
            return tuple(part for part in value.replace(",", " ").split() if part)
        return value

    @field_validator("expires", mode="before")
    @classmethod
    def _date(cls, value: Any) -> Any:
        if isinstance(value, date) and not isinstance(value, datetime):
            return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
        if isinstance(value, str) and len(value) == 10:  # 2027-01-31: the start of that day, UTC
            return value + "T00:00:00Z"
        return value

    @field_validator("expires")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return value.replace(tzinfo=timezone.utc) if value is not None and value.tzinfo is None else value

    def policy(self) -> Policy:
        return Policy(role=self.role, models=self.models,
                      quota=Quota(self.requests_per_minute, self.tokens_per_minute, self.max_parallel),
                      expires=self.expires)


@dataclass(frozen=True, slots=True)
class ApiKey:
    name: str
    id: str
    sha256: str
    policy: Policy


@dataclass(frozen=True, slots=True)
class User:
    username: str
    password_hash: str
    policy: Policy


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    secret: bytes
    created: str = ""  # RFC 3339; the newest key signs, every key verifies


@dataclass(frozen=True)
class Credentials:
    """One consistent snapshot; sources build a new one on every change and swap it in whole."""

    keys: dict[str, ApiKey] = field(default_factory=dict)  # by key id
    users: dict[str, User] = field(default_factory=dict)  # by username
    signing_keys: tuple[SigningKey, ...] = ()  # newest first

    @property
    def signer(self) -> SigningKey | None:
        return self.signing_keys[0] if self.signing_keys else None

    def verification_key(self, kid: str) -> bytes | None:
        return next((k.secret for k in self.signing_keys if k.kid == kid), None)

    def with_keys(self, extra: Iterable[ApiKey]) -> "Credentials":
        return replace(self, keys={**self.keys, **{k.id: k for k in extra}})

    def with_signing_key(self, key: SigningKey) -> "Credentials":
        return replace(self, signing_keys=(*self.signing_keys, key))


class CredentialError(ValueError):
    """A credential that cannot be used, and why (logged; the rest still load)."""


def from_secrets(secrets: Iterable[dict[str, Any]]) -> tuple[Credentials, list[str]]:
    """The snapshot of labelled Secrets (as the API returns them), and one problem per Secret skipped."""
    keys, users, signing, problems = {}, {}, [], []
    for secret in secrets:
        meta = secret.get("metadata") or {}
        name = meta.get("name", "?")
        kind = (meta.get("labels") or {}).get(LABEL)
        try:
            data = {k: _b64(v) for k, v in (secret.get("data") or {}).items()}
            fields = meta.get("annotations") or {}
            if kind == "api-key":
                key = _api_key(name, data.get("id"), data.get("sha256"), fields)
                keys[key.id] = key
            elif kind == "user":
                user = _user(data.get("username") or name, data.get("password-hash"), fields)
                users[user.username] = user
            elif kind == "signing-key":
                signing.append(_signing_key(name, data.get("key"), meta.get("creationTimestamp") or ""))
            else:
                raise CredentialError(f"label {LABEL}={kind!r} is not one of {', '.join(KINDS)}")
        except CredentialError as exc:
            problems.append(f"Secret {name}: {exc}")
    return Credentials(keys, users, _newest_first(signing)), problems


def from_file(document: dict[str, Any]) -> Credentials:
    """The local file: `{apiKeys: [...], users: [...], signingKeys: [...]}` (raises on a bad entry:
    a local file is fixed by whoever runs the gateway, at start)."""
    keys = [_api_key(e.get("name", e.get("id", "?")), e.get("id"), e.get("sha256"), e)
            for e in document.get("apiKeys") or []]
    users = [_user(e.get("username"), e.get("passwordHash"), e) for e in document.get("users") or []]
    signing = [_signing_key(e.get("kid", f"file-{i}"), _text_to_bytes(e.get("key")), e.get("created", ""))
               for i, e in enumerate(document.get("signingKeys") or [])]
    return Credentials({k.id: k for k in keys}, {u.username: u for u in users}, _newest_first(signing))


def _api_key(name: str, key_id: str | bytes | None, sha256: str | bytes | None, fields: dict) -> ApiKey:
    key_id, sha256 = _text(key_id), _text(sha256)
    if not key_id or len(key_id) != 12 or not _is_hex(key_id):
        raise CredentialError("an api-key needs `id`: the 12 hex digits after 'ck-'")
    if not sha256 or len(sha256) != 64 or not _is_hex(sha256):
        raise CredentialError("an api-key needs `sha256`: the hex SHA-256 of the key's secret part")
    return ApiKey(name=name, id=key_id.lower(), sha256=sha256.lower(), policy=_policy(fields))


def _user(username: str | bytes | None, password_hash: str | bytes | None, fields: dict) -> User:
    username, password_hash = _text(username), _text(password_hash)
    if not username:
        raise CredentialError("a user needs `username`")
    if not password_hash or not password_hash.startswith("$argon2"):
        raise CredentialError("a user needs `password-hash`, an argon2 hash (python -m conch_gateway.auth user …)")
    return User(username=username, password_hash=password_hash, policy=_policy(fields))


def _signing_key(kid: str, secret: bytes | None, created: str) -> SigningKey:
    if not secret or len(secret) < 32:
        raise CredentialError("a signing-key needs `key` of at least 32 random bytes")
    return SigningKey(kid=kid, secret=secret, created=created)


def _policy(fields: dict) -> Policy:
    try:
        return PolicyFields.model_validate(fields).policy()
    except ValidationError as exc:
        first = exc.errors()[0]
        raise CredentialError(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None


def _newest_first(keys: list[SigningKey]) -> tuple[SigningKey, ...]:
    return tuple(sorted(keys, key=lambda k: (k.created, k.kid), reverse=True))


def _b64(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise CredentialError("data is not base64") from None


def _text(value: str | bytes | None) -> str | None:
    if isinstance(value, bytes):
        try:
            return value.decode().strip()
        except UnicodeDecodeError:
            raise CredentialError("data is not UTF-8 text") from None
    return value.strip() if isinstance(value, str) else value


def _text_to_bytes(value: str | None) -> bytes | None:
    """A signing key in the local file: base64 text (what the CLI writes)."""
    return _b64(value) if value else None


def _is_hex(value: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in value)
