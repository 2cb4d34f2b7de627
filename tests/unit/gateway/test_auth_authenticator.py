"""The authenticator: every kind of credential to a Caller or a 401 with the right code, and what each
caller may use (the cluster reviewer is a stand-in here; tests/k8s/test_auth_service_accounts.py uses the
real API server)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from conch_api import TensorInterface
from conch_gateway.auth import caller as callers
from conch_gateway.auth import keys, passwords, tokens
from conch_gateway.auth.authenticator import Authenticator
from conch_gateway.auth.caller import ClusterUser
from conch_gateway.auth.credentials import ApiKey, Credentials, Policy, Quota, SigningKey, User
from conch_gateway.errors import ConchError
from conch_gateway.prompts import PromptFormat
from conch_gateway.registry.base import ServedModel


def served(model_id: str, namespace: str | None = "ns") -> ServedModel:
    return ServedModel(id=model_id, name=model_id, endpoint="http://t", grpc_address=None, triton_model=model_id,
                       interface=TensorInterface.ENSEMBLE, prompt=PromptFormat.for_model(None, None), routable=True,
                       health="healthy", namespace=namespace)


class Reviewer:
    """Stands in for the API server: one token, one RoleBinding."""

    def __init__(self):
        self.reviews = 0

    async def authenticate(self, token):
        return ClusterUser("system:serviceaccount:apps:bot", "uid-1", ("system:serviceaccounts",)) \
            if token == "a.b.c" else None

    async def may_invoke(self, user, namespace, name):
        self.reviews += 1
        return (namespace, name) == ("apps", "chat")


@pytest.fixture
def setup():
    alice, expired = keys.generate(), keys.generate()
    signing = SigningKey("k1", b"s" * 32)
    credentials = Credentials(
        keys={alice.id: ApiKey("alice", alice.id, alice.sha256, Policy(models=("chat",), quota=Quota(10))),
              expired.id: ApiKey("old", expired.id, expired.sha256,
                                 Policy(expires=datetime.now(timezone.utc) - timedelta(days=1)))},
        users={"bob": User("bob", passwords.hash_password("correct horse battery"), Policy(role="admin"))},
        signing_keys=(signing,))
    failures = []
    reviewer = Reviewer()
    authenticator = Authenticator(credentials, default_quota=Quota(100, 1000, 4), reviewer=reviewer,
                                  on_failure=failures.append)
    return authenticator, alice, expired, failures, reviewer


async def refused(authenticator, presented) -> ConchError:
    with pytest.raises(ConchError) as raised:
        await authenticator.authenticate(presented)
    assert raised.value.status == 401 and raised.value.code == "AUTHENTICATION_FAILED"
    assert raised.value.headers["WWW-Authenticate"].startswith("Bearer")
    return raised.value


async def test_api_keys(setup):
    authenticator, alice, expired, failures, _ = setup
    caller = await authenticator.authenticate(alice.key)
    assert caller.principal == "key:alice"
    assert caller.quota == Quota(10, 1000, 4)  # its own request limit, the defaults for the rest
    assert await caller.may_use(served("chat")) and not await caller.may_use(served("other"))
    key_id, secret = keys.parse(alice.key)
    assert "unknown or revoked" in (await refused(authenticator, f"ck-{key_id}-{'0' * 64}")).message
    assert "expired" in (await refused(authenticator, expired.key)).message
    assert "neither" in (await refused(authenticator, "sk-anything")).message
    # Revocation: the source swaps in a snapshot without the key.
    authenticator.credentials = replace(authenticator.credentials, keys={})
    await refused(authenticator, alice.key)
    assert failures == ["unknown_key", "expired", "malformed", "unknown_key"]


async def test_users_log_in_for_a_token_that_works_until_the_user_is_gone(setup):
    authenticator, *_ = setup
    token, ttl = await authenticator.login("bob", "correct horse battery")
    assert ttl == 3600 and tokens.issuer_of(token) == "conch"
    caller = await authenticator.authenticate(token)
    assert caller.principal == "user:bob" and caller.is_admin
    for username, password in (("bob", "wrong"), ("nobody", "correct horse battery")):
        with pytest.raises(ConchError) as raised:
            await authenticator.login(username, password)
        assert raised.value.status == 401 and "unknown username or wrong password" in raised.value.message
    authenticator.credentials = replace(authenticator.credentials, users={})
    assert "no longer exists" in (await refused(authenticator, token)).message


async def test_service_account_tokens_are_reviewed_and_authorized_per_model(setup):
    authenticator, *_, reviewer = setup
    caller = await authenticator.authenticate("a.b.c")
    assert caller.principal == "system:serviceaccount:apps:bot" and caller.quota == Quota(100, 1000, 4)
    assert await caller.may_use(served("chat", "apps"))
    assert not await caller.may_use(served("chat", "other")) and not await caller.may_use(served("chat", None))
    assert "not accepted" in (await refused(authenticator, "x.y.z")).message


async def test_authorize_uses_the_caller_in_context():
    model = served("chat")
    await callers.authorize(model)  # nobody set a caller: authentication is off
    token = callers.use(callers.Caller("key:x", Policy(models=("other",))))
    try:
        with pytest.raises(ConchError) as raised:
            await callers.authorize(model)
        assert raised.value.status == 403 and raised.value.code == "AUTHORIZATION_FAILED"
        assert "'key:x' may not use model 'chat'" in raised.value.message
        assert await callers.usable([served("other"), model]) == [served("other")]
    finally:
        callers.reset(token)
