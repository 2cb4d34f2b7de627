"""Credentials from the cluster — the auth package's one module that talks to the Kubernetes API.

- `SecretCredentialSource` lists, then watches, the Secrets labelled `conch.dev/credential` in the
  gateway's namespace, and swaps a fresh `Credentials` snapshot into the authenticator on every
  event: a key created, annotated, rotated or deleted with kubectl counts on every replica within
  the watch's latency (well under a second), without a restart.
- `ClusterReviewer` asks the API server about ServiceAccount tokens (TokenReview, with the
  gateway's own audience) and whether their user may `invoke` a Model (SubjectAccessReview), and
  keeps each answer for a few seconds so a busy caller costs one review per window, not per request.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from pathlib import Path
from typing import Any, Callable

from ..kubernetes_client import api_client
from .caller import ClusterUser
from .credentials import LABEL, Credentials, from_secrets

log = logging.getLogger("conch.gateway.auth")

IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def own_namespace(configured: str | None) -> str:
    if configured:
        return configured
    try:
        return IN_CLUSTER_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


class SecretCredentialSource:
    def __init__(self, namespace: str, publish: Callable[[Credentials], None], *,
                 extend: Callable[[Credentials], Credentials] = lambda c: c,
                 watch_timeout_s: int = 300, max_backoff_s: float = 5.0):
        self._namespace = namespace
        self._publish = publish
        self._extend = extend  # e.g. add an admin key given in the environment
        self._watch_timeout_s = watch_timeout_s
        self._max_backoff_s = max_backoff_s
        self._secrets: dict[str, dict[str, Any]] = {}
        self._api = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._api = await api_client()
        resource_version = await self._relist()  # every key counts from the first request on
        self._task = asyncio.create_task(self._watch_forever(resource_version), name="credential-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._api is not None:
            await self._api.close()

    def _core(self):
        from kubernetes.aio import client

        return client.CoreV1Api(self._api)

    async def _relist(self) -> str:
        listing = await self._core().list_namespaced_secret(self._namespace, label_selector=LABEL)
        body = self._api.sanitize_for_serialization(listing)  # the API's own JSON shape
        self._secrets = {s["metadata"]["name"]: s for s in body.get("items", [])}
        self._rebuild()
        return body["metadata"]["resourceVersion"]

    def _rebuild(self) -> None:
        credentials, problems = from_secrets(self._secrets.values())
        for problem in problems:
            log.warning("ignoring credential: %s", problem)
        self._publish(self._extend(credentials))

    async def _watch_forever(self, resource_version: str) -> None:
        from kubernetes.aio import watch

        backoff = 0.1
        while True:
            try:
                async with watch.Watch().stream(self._core().list_namespaced_secret, self._namespace,
                                                label_selector=LABEL, resource_version=resource_version,
                                                timeout_seconds=self._watch_timeout_s,
                                                allow_watch_bookmarks=True) as stream:
                    async for event in stream:
                        kind, obj = event["type"], event["raw_object"]
                        if kind == "ERROR":
                            raise RuntimeError(f"watch error: {obj}")
                        resource_version = obj.get("metadata", {}).get("resourceVersion", resource_version)
                        name = obj.get("metadata", {}).get("name")
                        if kind in ("ADDED", "MODIFIED"):
                            self._secrets[name] = obj
                        elif kind == "DELETED":
                            self._secrets.pop(name, None)
                        else:
                            continue
                        self._rebuild()
                        backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("watching credential Secrets failed (%s); listing again in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)
                try:
                    resource_version = await self._relist()
                except asyncio.CancelledError:
                    raise
                except Exception as relist_error:
                    log.warning("listing credential Secrets failed: %s", relist_error)


class _TTLCache:
    """Answers for `ttl_s`; bounded so a flood of distinct tokens cannot grow it without end."""

    def __init__(self, ttl_s: float, max_entries: int = 10_000):
        self._ttl_s = ttl_s
        self._max = max_entries
        self._entries: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any) -> tuple[bool, Any]:
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            return False, None
        return True, entry[1]

    def put(self, key: Any, value: Any, ttl_s: float | None = None) -> None:
        if len(self._entries) >= self._max:
            now = time.monotonic()
            self._entries = {k: v for k, v in self._entries.items() if v[0] >= now}
            if len(self._entries) >= self._max:
                self._entries.clear()
        self._entries[key] = (time.monotonic() + (self._ttl_s if ttl_s is None else ttl_s), value)


class ClusterReviewer:
    """TokenReview and SubjectAccessReview against the API server, cached for `cache_s`."""

    def __init__(self, audiences: list[str], cache_s: float = 10.0, *, resource_group: str = "conch.dev",
                 resource: str = "models", verb: str = "invoke"):
        self._audiences = list(audiences)
        self._tokens = _TTLCache(cache_s)
        self._access = _TTLCache(cache_s)
        self._negative_s = min(cache_s, 2.0)  # a fixed RoleBinding counts within two seconds
        self._group, self._resource, self._verb = resource_group, resource, verb
        self._api = None

    async def start(self) -> None:
        self._api = await api_client()

    async def stop(self) -> None:
        if self._api is not None:
            await self._api.close()

    async def authenticate(self, token: str) -> ClusterUser | None:
        key = hashlib.sha256(token.encode()).digest()  # never keep the token itself
        hit, user = self._tokens.get(key)
        if hit:
            return user
        from kubernetes.aio import client

        review = client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token, audiences=self._audiences or None))
        try:
            answer = await client.AuthenticationV1Api(self._api).create_token_review(review)
        except Exception as exc:  # the API server is down: refuse now, ask again next time
            log.warning("TokenReview failed: %s", exc)
            return None
        status = answer.status
        user = None
        if status and status.authenticated and status.user and status.user.username:
            extra = tuple(sorted((k, tuple(v or ())) for k, v in (status.user.extra or {}).items()))
            user = ClusterUser(status.user.username, status.user.uid or "", tuple(status.user.groups or ()), extra)
        self._tokens.put(key, user, None if user else self._negative_s)
        return user

    async def may_invoke(self, user: ClusterUser, namespace: str, name: str) -> bool:
        key = (user, namespace, name)
        hit, allowed = self._access.get(key)
        if hit:
            return allowed
        from kubernetes.aio import client

        review = client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
            user=user.username, uid=user.uid or None, groups=list(user.groups) or None,
            extra={k: list(v) for k, v in user.extra} or None,
            resource_attributes=client.V1ResourceAttributes(group=self._group, resource=self._resource,
                                                            verb=self._verb, namespace=namespace, name=name)))
        try:
            answer = await client.AuthorizationV1Api(self._api).create_subject_access_review(review)
        except Exception as exc:
            log.warning("SubjectAccessReview failed: %s", exc)
            return False
        allowed = bool(answer.status and answer.status.allowed)
        self._access.put(key, allowed, None if allowed else self._negative_s)
        return allowed

