"""The caller of the request being handled, and the one check of what it may use.

The auth middleware sets the `Caller` in a context variable for the request's task (and the tasks
it spawns: `n` choices, batch items); the generation core asks `authorize(model)` before any
backend call. With authentication off nobody sets it, and the default caller may use everything.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol

from .. import errors
from ..registry.base import ServedModel
from .credentials import Policy, Quota


@dataclass(frozen=True, slots=True)
class ClusterUser:
    """A Kubernetes identity, as TokenReview returned it."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


class AccessReviewer(Protocol):
    async def may_invoke(self, user: ClusterUser, namespace: str, name: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class Caller:
    principal: str  # "key:<name>", "user:<username>", a Kubernetes username, or "anonymous"
    policy: Policy = field(default_factory=Policy)
    cluster_user: ClusterUser | None = None
    reviewer: AccessReviewer | None = None  # decides for cluster users (their policy allows no model itself)

    @property
    def is_admin(self) -> bool:
        return self.policy.role == "admin"

    @property
    def quota(self) -> Quota:
        return self.policy.quota

    async def may_use(self, model: ServedModel) -> bool:
        qualified = f"{model.namespace}/{resource_name(model)}" if model.namespace else None
        if self.policy.allows(model.id, qualified):
            return True
        if self.reviewer is not None and self.cluster_user is not None and model.namespace:
            return await self.reviewer.may_invoke(self.cluster_user, model.namespace, resource_name(model))
        return False


# No authentication: the gateway serves whoever reaches it (loopback by default, see settings.auth).
UNRESTRICTED = Caller("anonymous", Policy(role="admin"))
# Authentication on, no credential sent, on the one route that answers anyway (GET /v1/models: empty).
NOBODY = Caller("anonymous", Policy(role="user", models=()))

_current: ContextVar[Caller] = ContextVar("conch_caller", default=UNRESTRICTED)


def current() -> Caller:
    return _current.get()


def use(caller: Caller):
    """Makes `caller` current; returns the token `reset` takes."""
    return _current.set(caller)


def reset(token) -> None:
    _current.reset(token)


async def authorize(model: ServedModel) -> None:
    caller = _current.get()
    if caller is UNRESTRICTED or await caller.may_use(model):
        return
    raise errors.authorization_failed(f"'{caller.principal}' may not use model '{model.id}'")


def resource_name(model: ServedModel) -> str:
    """The Model's metadata.name (a model id may be qualified as namespace/name)."""
    return model.id.rsplit("/", 1)[-1]


async def usable(models: list[ServedModel]) -> list[ServedModel]:
    """The models the current caller may use, in order (for the model lists)."""
    caller = _current.get()
    if caller is UNRESTRICTED or caller.is_admin:
        return models
    allowed = await asyncio.gather(*(caller.may_use(m) for m in models))
    return [m for m, ok in zip(models, allowed) if ok]


def sees_internals() -> bool:
    """May the caller see where models are served (endpoints)? Admins, and everyone without auth."""
    return _current.get().is_admin
