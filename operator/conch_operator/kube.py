"""The operator's only door to the Kubernetes API.

Objects travel as plain dicts (the renderer's output is applied as is) over the `kubernetes`
client's authenticated connection pool. Writes are server-side apply with one field manager,
so applying the same desired state twice is a no-op and a restarted operator converges.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, urlencode

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

from conch_api import GROUP, PLURAL, VERSION

FIELD_MANAGER = "conch-operator"

# kind → (API prefix, plural). Only the kinds the operator owns or reads.
_RESOURCES = {
    "ConfigMap": ("/api/v1", "configmaps"),
    "Service": ("/api/v1", "services"),
    "Pod": ("/api/v1", "pods"),
    "PersistentVolumeClaim": ("/api/v1", "persistentvolumeclaims"),
    "Secret": ("/api/v1", "secrets"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "Job": ("/apis/batch/v1", "jobs"),
    "Lease": ("/apis/coordination.k8s.io/v1", "leases"),
    "Event": ("/api/v1", "events"),
    "Model": (f"/apis/{GROUP}/{VERSION}", PLURAL),
}

OWNED_KINDS = ("ConfigMap", "Service", "Deployment", "Job")


# Answers that refuse the request itself — validation (400, 422), admission such as a quota or a
# policy, or missing RBAC (403), an object too large (413): sending it again unchanged gets the same
# answer. Everything else (no answer, 409, 429, 5xx) is a passing condition worth retrying soon.
REJECTIONS = frozenset({400, 403, 413, 422})
MAX_EVENT_MESSAGE = 1024


class KubeError(RuntimeError):
    def __init__(self, status: int, message: str):
        super().__init__(f"Kubernetes API answered {status}: {message}")
        self.status = status
        self.message = message

    @property
    def rejected(self) -> bool:
        return self.status in REJECTIONS


def load_config() -> None:
    """In a pod: its service account. Elsewhere: KUBECONFIG / ~/.kube/config."""
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()


class Kube:
    def __init__(self, pool_size: int = 16):
        configuration = kubernetes.client.Configuration.get_default_copy()
        configuration.connection_pool_maxsize = pool_size
        self._api = kubernetes.client.ApiClient(configuration)
        # Contact with the API server: lost when a request gets no answer at all (the API server
        # restarts, the network fails), back at the next answer — see `answering_again`.
        self._contact_lost = False
        self._contact_back = False

    @property
    def contact_lost(self) -> bool:
        return self._contact_lost

    def answering_again(self) -> bool:
        """True once after contact came back: what failed meanwhile need not wait out its back-off."""
        back, self._contact_back = self._contact_back, False
        return back

    def reachable(self) -> bool:
        """Does the API server answer (`/version`, readable by anyone)? Restores contact if it does."""
        try:
            self._request("GET", "/version")
        except KubeError:
            return False
        return True

    def close(self) -> None:
        self._api.close()

    def apply(self, obj: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        """Server-side apply; `dry_run` runs validation and admission (quota included) and writes nothing."""
        meta = obj["metadata"]
        path = _path(obj["kind"], meta["namespace"], meta["name"])
        query = {"fieldManager": FIELD_MANAGER, "force": "true", **({"dryRun": "All"} if dry_run else {})}
        return self._request("PATCH", path, query, body=obj, content_type="application/apply-patch+yaml")

    def create_or_apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """For objects that most likely do not exist yet: a plain create costs the API server
        far less than a server-side apply; if the object exists after all, apply."""
        created = self.create(obj)
        return created if created is not None else self.apply(obj)

    def create(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """Creates an object that must not be changed once it exists (a Job's template is
        immutable; a claim is the user's to resize). None when it exists already."""
        meta = obj["metadata"]
        try:
            return self._request("POST", _path(obj["kind"], meta["namespace"]), {"fieldManager": FIELD_MANAGER},
                                 body=obj)
        except KubeError as exc:
            if exc.status != 409:
                raise
            return None

    def merge_patch(self, obj: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
        """JSON merge patch of only the given fields (e.g. one key of a ConfigMap that others write
        too); `obj` is created as it is when missing."""
        meta = obj["metadata"]
        path = _path(obj["kind"], meta["namespace"], meta["name"])
        for _ in range(2):
            try:
                return self._request("PATCH", path, body=patch, content_type="application/merge-patch+json")
            except KubeError as exc:
                if exc.status != 404:
                    raise
            created = self.create(obj)
            if created is not None:
                return created
        raise KubeError(409, f"{obj['kind']} {meta['name']} kept appearing and disappearing")

    def patch(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any] | None:
        """JSON merge patch of an existing object (None when there is none): for a field or two
        of an object whose desired state is not rendered now, e.g. a kept Deployment's replicas."""
        try:
            return self._request("PATCH", _path(kind, namespace, name), {"fieldManager": FIELD_MANAGER}, body=patch,
                                 content_type="application/merge-patch+json")
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        """PUT: optimistic concurrency on metadata.resourceVersion (409 when someone wrote first)."""
        meta = obj["metadata"]
        return self._request("PUT", _path(obj["kind"], meta["namespace"], meta["name"]), body=obj)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._request("GET", _path(kind, namespace, name))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, kind: str, namespace: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        query = {"labelSelector": label_selector} if label_selector else None
        return self._request("GET", _path(kind, namespace), query).get("items", [])

    def delete(self, kind: str, namespace: str, name: str, uid: str | None = None) -> None:
        """Gone already (404) is done. With `uid`, only that very object is deleted: one created
        again under the name meanwhile (409, precondition failed) is left alone."""
        body: dict[str, Any] = {"propagationPolicy": "Background"}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            self._request("DELETE", _path(kind, namespace, name), body=body)
        except KubeError as exc:
            if exc.status not in (404, 409):
                raise

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        path = _path("Model", namespace, name) + "/status"
        try:
            self._request("PATCH", path, body={"status": status}, content_type="application/merge-patch+json")
        except KubeError as exc:
            if exc.status != 404:  # deleted meanwhile: nothing left to report on
                raise

    def record_event(self, involved: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """A core/v1 Event about `involved` (what `kubectl describe` and `kubectl get events` show).
        Created only, never patched: one Event per occurrence (the operator's RBAC is create-only)."""
        meta = involved["metadata"]
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": involved["apiVersion"], "kind": involved["kind"], "name": meta["name"],
                               "namespace": meta["namespace"], "uid": meta.get("uid"),
                               "resourceVersion": meta.get("resourceVersion")},
            "type": type_, "reason": reason, "message": message[:MAX_EVENT_MESSAGE],
            "source": {"component": FIELD_MANAGER}, "reportingComponent": FIELD_MANAGER,
            "reportingInstance": os.environ.get("POD_NAME") or socket.gethostname(),
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }
        self._request("POST", _path("Event", meta["namespace"]), body=event)

    def _request(self, method: str, path: str, query: dict[str, str] | None = None, *, body: Any = None,
                 content_type: str = "application/json") -> Any:
        url = path + ("?" + urlencode(query) if query else "")
        headers = {"Accept": "application/json", "Content-Type": content_type}
        serialized = self._api.param_serialize(method=method, resource_path=url, header_params=headers,
                                               body=body, auth_settings=["BearerToken"])
        try:
            response = self._api.call_api(*serialized, _request_timeout=30)
        except ApiException as exc:
            if not exc.status:  # the client's wrapping of a failed TLS connection
                self._contact_lost = True
            raise KubeError(exc.status or 0, _reason(exc.body) or str(exc.reason)) from None
        except urllib3.exceptions.HTTPError as exc:  # no answer: refused, reset, timed out
            self._contact_lost = True
            raise KubeError(0, f"no answer from the API server: {exc}") from None
        if self._contact_lost:
            self._contact_lost, self._contact_back = False, True
        data = response.read()
        if response.status >= 400:
            raise KubeError(response.status, _reason(data))
        return json.loads(data) if data else {}


def _path(kind: str, namespace: str, name: str | None = None) -> str:
    prefix, plural = _RESOURCES[kind]
    path = f"{prefix}/namespaces/{quote(namespace)}/{plural}"
    return f"{path}/{quote(name)}" if name else path


def _reason(body: Any) -> str:
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        return json.loads(body).get("message", body)
    except (TypeError, ValueError):
        return str(body)[:500]
