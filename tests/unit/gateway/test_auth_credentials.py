"""Credentials as data: key format and hashing, Secrets and the local file parsed into one snapshot,
policies (roles, model patterns, expiry), JWT issue and verification with rotation."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone

import pytest

from conch_gateway.auth import keys, tokens
from conch_gateway.auth.credentials import Credentials, CredentialError, Policy, Quota, SigningKey, from_file, from_secrets
from conch_gateway.auth.local import admin_key_from_env


def b64(text: str | bytes) -> str:
    return base64.b64encode(text if isinstance(text, bytes) else text.encode()).decode()


def key_secret(name: str, key: keys.NewKey, **annotations: str) -> dict:
    return {"metadata": {"name": name, "labels": {"conch.dev/credential": "api-key"},
                         "annotations": {f"conch.dev/{k.replace('_', '-')}": v for k, v in annotations.items()}},
            "data": {"id": b64(key.id), "sha256": b64(key.sha256)}}


def test_a_key_is_random_shown_once_and_stored_as_its_hash():
    first, second = keys.generate(), keys.generate()
    assert first.key != second.key and first.id != second.id
    key_id, secret = keys.parse(first.key)
    assert key_id == first.id and secret not in first.sha256 and len(secret) == 64
    wrong = secret[:-1] + ("1" if secret.endswith("0") else "0")
    assert keys.matches(secret, first.sha256) and not keys.matches(wrong, first.sha256)
    for malformed in ("", "ck-", first.key + "0", first.key.upper(), "Bearer " + first.key, first.key.replace("-", "_")):
        assert keys.parse(malformed) is None


def test_secrets_become_one_snapshot_and_bad_ones_are_skipped_with_a_reason():
    good, other = keys.generate(), keys.generate()
    signing = {"metadata": {"name": "jwt-1", "labels": {"conch.dev/credential": "signing-key"},
                            "creationTimestamp": "2026-01-01T00:00:00Z"}, "data": {"key": b64(b"k" * 32)}}
    newer = {"metadata": {"name": "jwt-2", "labels": {"conch.dev/credential": "signing-key"},
                          "creationTimestamp": "2026-02-01T00:00:00Z"}, "data": {"key": b64(b"n" * 32)}}
    user = {"metadata": {"name": "user-bob", "labels": {"conch.dev/credential": "user"},
                         "annotations": {"conch.dev/role": "admin"}},
            "data": {"username": b64("bob"), "password-hash": b64("$argon2id$v=19$m=65536,t=3,p=4$x$y")}}
    credentials, problems = from_secrets([
        key_secret("alice", good, models="chat-*, team-a/*", requests_per_minute="60", max_parallel="2"),
        key_secret("broken", other, requests_per_minute="lots"),
        {"metadata": {"name": "nohash", "labels": {"conch.dev/credential": "api-key"}}, "data": {"id": b64(other.id)}},
        {"metadata": {"name": "odd", "labels": {"conch.dev/credential": "password"}}, "data": {}},
        signing, newer, user,
    ])
    assert list(credentials.keys) == [good.id]
    alice = credentials.keys[good.id]
    assert alice.name == "alice" and alice.policy.models == ("chat-*", "team-a/*")
    assert alice.policy.quota == Quota(requests_per_minute=60, max_parallel=2)
    assert credentials.users["bob"].policy.role == "admin"
    assert credentials.signer.kid == "jwt-2" and credentials.verification_key("jwt-1") == b"k" * 32
    assert len(problems) == 3
    assert any("broken" in p and "conch.dev/requests-per-minute" in p for p in problems)
    assert any("nohash" in p and "sha256" in p for p in problems)
    assert any("odd" in p and "api-key, user, signing-key" in p for p in problems)


def test_the_local_file_uses_the_same_fields():
    new = keys.generate()
    credentials = from_file({"apiKeys": [{"name": "ci", "id": new.id, "sha256": new.sha256, "role": "user",
                                          "models": ["echo"], "tokensPerMinute": 1000, "expires": "2030-01-31"}],
                             "signingKeys": [{"kid": "local", "key": b64(b"s" * 32)}]})
    ci = credentials.keys[new.id]
    assert ci.policy.quota.tokens_per_minute == 1000
    assert ci.policy.expires == datetime(2030, 1, 31, tzinfo=timezone.utc)
    with pytest.raises(CredentialError):
        from_file({"apiKeys": [{"name": "x", "id": "nothex", "sha256": new.sha256}]})


def test_policies_match_models_by_name_pattern_or_namespace():
    policy = Policy(models=("chat-*", "team-a/*"))
    assert policy.allows("chat-small") and policy.allows("embed", "team-a/embed")
    assert not policy.allows("embed", "team-b/embed") and not policy.allows("summarize")
    assert Policy(role="admin", models=()).allows("anything")
    assert not Policy(models=()).allows("anything")
    now = datetime.now(timezone.utc)
    assert Policy(expires=now - timedelta(seconds=1)).expired(now) and not Policy().expired(now)
    assert Quota(requests_per_minute=5).or_default(Quota(10, 100, 2)) == Quota(5, 100, 2)


def test_an_admin_key_from_the_environment_is_kept_as_a_hash():
    new = keys.generate()
    [admin] = admin_key_from_env(new.key)
    assert admin.sha256 == new.sha256 and admin.policy.role == "admin" and new.key not in repr(admin)
    with pytest.raises(CredentialError):
        admin_key_from_env("letmein")


def test_tokens_verify_with_the_key_they_name_so_rotation_keeps_old_tokens_valid():
    old, new = SigningKey("old", b"o" * 32, "2026-01-01"), SigningKey("new", b"n" * 32, "2026-02-01")
    before = Credentials(signing_keys=(old,))
    token = tokens.issue("bob", before.signer, issuer="conch", ttl_s=60)
    rotated = Credentials(signing_keys=(new, old))
    assert tokens.verify(token, rotated, issuer="conch") == "bob"
    assert tokens.issuer_of(token) == "conch"
    retired = Credentials(signing_keys=(new,))
    with pytest.raises(tokens.TokenInvalid, match="no longer accepts"):
        tokens.verify(token, retired, issuer="conch")
    expired = tokens.issue("bob", new, issuer="conch", ttl_s=60, now=0)
    with pytest.raises(tokens.TokenInvalid, match="expired"):
        tokens.verify(expired, rotated, issuer="conch")
    forged = tokens.issue("bob", SigningKey("new", b"x" * 32), issuer="conch", ttl_s=60)
    with pytest.raises(tokens.TokenInvalid, match="not valid"):
        tokens.verify(forged, rotated, issuer="conch")
