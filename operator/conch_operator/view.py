"""What the operator has seen of the cluster, kept current by its watch events.

Reconciles read Deployments and unschedulable pods from here instead of asking the API server
each time — that is most of the operator's API traffic at hundreds of Models. Watch events of
one object arrive in order, so every entry only moves forward in time; an entry that was never
seen (just after a restart) is read from the API once and remembered.
"""

from __future__ import annotations

import threading
from typing import Any

import orjson

Key = tuple[str, str]  # (namespace, Model name)


class ClusterView:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Kept serialized: one allocation per Model instead of hundreds of small objects that,
        # made during a burst of events, pin Python's memory arenas long after the burst.
        self._models: dict[Key, bytes] = {}
        self._deployments: dict[Key, dict[str, Any]] = {}
        self._unschedulable: dict[Key, dict[str, str]] = {}  # pod name → scheduler message
        # (namespace, engine cache key) → Models serving that engine: a build Job is shared, so its
        # events concern every one of them.
        self._engine_users: dict[tuple[str, str], set[Key]] = {}

    def model_event(self, kind: str, body: dict[str, Any]) -> None:
        key = _key(body)
        with self._lock:
            if kind == "DELETED":
                self._models.pop(key, None)
                self._drop_engine_user(key)
            else:
                self._models[key] = orjson.dumps(body)

    def models(self) -> list[dict[str, Any]]:
        with self._lock:
            serialized = list(self._models.values())
        return [orjson.loads(m) for m in serialized]

    def model(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            serialized = self._models.get((namespace, name))
        return None if serialized is None else orjson.loads(serialized)

    def deployment_event(self, kind: str, model: Key, body: dict[str, Any]) -> None:
        with self._lock:
            if kind == "DELETED":
                self._deployments.pop(model, None)
            else:
                self._deployments[model] = _slim(body)

    def deployment(self, model: Key) -> tuple[bool, dict[str, Any] | None]:
        """(known, deployment): known is False when no event about it has been seen yet."""
        with self._lock:
            return model in self._deployments, self._deployments.get(model)

    def remember_deployment(self, model: Key, body: dict[str, Any] | None) -> None:
        """A Deployment read from the API; kept unless a watch event got there first."""
        if body is not None:
            with self._lock:
                self._deployments.setdefault(model, _slim(body))

    def pod_event(self, kind: str, model: Key, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        message = None if kind == "DELETED" else _unschedulable_message(body)
        with self._lock:
            pods = self._unschedulable.setdefault(model, {})
            if message is None:
                pods.pop(name, None)
            else:
                pods[name] = message
            if not pods:
                del self._unschedulable[model]

    def unschedulable(self, model: Key) -> list[str]:
        with self._lock:
            return sorted(set(self._unschedulable.get(model, {}).values()))


    def use_engine(self, model: Key, namespace: str, cache_key: str) -> None:
        """The Model now serves this engine (and no other)."""
        with self._lock:
            self._drop_engine_user(model)
            self._engine_users.setdefault((namespace, cache_key), set()).add(model)

    def engine_users(self, namespace: str, key_prefix: str) -> list[Key]:
        """Models using the engine whose cache key starts with `key_prefix` (labels hold at most 63 characters)."""
        with self._lock:
            return sorted({m for (ns, key), users in self._engine_users.items()
                           if ns == namespace and key.startswith(key_prefix) for m in users})

    def _drop_engine_user(self, model: Key) -> None:
        for engine in [e for e, users in self._engine_users.items() if model in users]:
            self._engine_users[engine].discard(model)
            if not self._engine_users[engine]:
                del self._engine_users[engine]


def _key(body: dict[str, Any]) -> Key:
    return body["metadata"]["namespace"], body["metadata"]["name"]


def _slim(deployment: dict[str, Any]) -> dict[str, Any]:
    """Only what status decisions (and scaling a kept Deployment) need: keeps memory flat at
    hundreds of Models."""
    return {"metadata": {"name": deployment["metadata"]["name"]},
            "spec": {"replicas": (deployment.get("spec") or {}).get("replicas")},
            "status": deployment.get("status", {})}


def _unschedulable_message(pod: dict[str, Any]) -> str | None:
    for cond in (pod.get("status") or {}).get("conditions", []) or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False" and cond.get("reason") == "Unschedulable":
            return cond.get("message") or "no reason given"
    return None
